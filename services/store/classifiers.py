"""Classifiers: trained heads on the Sora vectors, stored by unique name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.errors import InvalidArgumentError, NotFoundError

from .models import Classifier, utcnow
from .segments import check_model_version


def save_classifier(
    session: Session,
    *,
    name: str,
    labels: Sequence[str],
    weights: bytes,
    model_version: str,
    metrics: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Classifier:
    """Create the classifier, or replace the one with this name (retraining) -> the row."""
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise InvalidArgumentError("name must be a non-empty string of at most 128 characters")
    if not labels or len(set(labels)) != len(labels):
        raise InvalidArgumentError("labels must be a non-empty list of distinct names")
    if not isinstance(weights, (bytes, bytearray, memoryview)) or not weights:
        raise InvalidArgumentError("weights must be non-empty bytes")
    check_model_version(model_version)
    now = now or utcnow()
    values: dict[str, Any] = {
        "labels": list(labels),
        "weights": bytes(weights),
        "metrics": dict(metrics or {}),
        "model_version": model_version,
        "updated_at": now,
    }
    row = _get(session, name, for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                row = Classifier(name=name, created_at=now, **values)
                session.add(row)
                session.flush()
            return row
        except IntegrityError:  # saved concurrently under the same name: replace that one
            row = _get(session, name, for_update=True)
            if row is None:
                raise
    for key, value in values.items():
        setattr(row, key, value)
    session.flush()
    return row


def _get(session: Session, name: str, *, for_update: bool = False) -> Classifier | None:
    stmt = select(Classifier).where(Classifier.name == name)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalar(stmt)


def get_classifier(session: Session, name: str) -> Classifier:
    row = _get(session, name)
    if row is None:
        raise NotFoundError(f"classifier {name!r} not found")
    return row


def list_classifiers(session: Session) -> list[Classifier]:
    return list(session.scalars(select(Classifier).order_by(Classifier.name)))


def delete_classifier(session: Session, name: str) -> None:
    session.delete(get_classifier(session, name))
    session.flush()
