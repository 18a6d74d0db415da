"""The database's identity: a random id, made once, that index snapshots are tied to.

    database_id(session)  -> "3f2c...": the store_identity row's id, inserted when absent

A restored backup keeps its id (its content is checked separately, see
services.index.vector_index); a re-created or another deployment's database has another.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import StoreIdentity


def database_id(session: Session) -> str:
    """This database's id; the first caller inserts it. Two first callers racing: the
    loser's insert fails on the one-row primary key and it reads the winner's id."""
    found = session.scalar(select(StoreIdentity.database_id).where(StoreIdentity.id == 1))
    if found is not None:
        return found
    new = str(uuid.uuid4())
    try:
        with session.begin_nested():
            session.add(StoreIdentity(id=1, database_id=new))
    except IntegrityError:
        found = session.scalar(select(StoreIdentity.database_id).where(StoreIdentity.id == 1))
        assert found is not None, "store_identity insert failed but no row is there"
        return found
    return new
