"""Domain errors of the store. The API maps them to gRPC status codes in one place:

NotFoundError        -> NOT_FOUND
ConflictError        -> FAILED_PRECONDITION (LeaseLostError is one: another worker owns the job)
InvalidArgumentError -> INVALID_ARGUMENT (also a ValueError, so plain callers can catch that)
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class NotFoundError(StoreError, LookupError):
    """The row asked for does not exist (or is deleted, where the function says so)."""


class ConflictError(StoreError):
    """The request contradicts the stored state (e.g. completing a job of a deleted video)."""


class LeaseLostError(ConflictError):
    """The caller no longer holds the job's lease: another worker claimed it."""


class InvalidArgumentError(StoreError, ValueError):
    """A malformed argument: a bad sha256, page token, vector shape or dtype."""
