"""The service's domain errors: one vocabulary for every layer, no gRPC here. A layer raises
the one that says what went wrong; the API maps each to a gRPC status code in one place
(`services.api.errors.status_of`):

    InvalidArgumentError    -> INVALID_ARGUMENT (also a ValueError: plain callers catch that)
    NotFoundError           -> NOT_FOUND (also a LookupError)
    ConflictError           -> FAILED_PRECONDITION: the request contradicts the stored state
                               (a video not READY, completing a job of a deleted video)
      LeaseLostError           another worker owns the job now
    AlreadyExistsError      -> ALREADY_EXISTS: what the request would create is another
                               video's already (an external id naming other bytes)
    PermissionDeniedError   -> PERMISSION_DENIED (a path outside the allowed roots, a URL off
                               the allow-list)
    ResourceExhaustedError  -> RESOURCE_EXHAUSTED (an upload over its cap)
    UnavailableError        -> UNAVAILABLE (retry later: a download or a dependency failed)
    UnauthenticatedError    -> UNAUTHENTICATED
    DeadlineExceededError   -> DEADLINE_EXCEEDED (the call's deadline passed mid-work)
    CallCancelledError      -> CANCELLED (the client went away)

The message is sent to the client as it is: say what to do about it.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class of every error the service raises on purpose."""


class InvalidArgumentError(ServiceError, ValueError):
    """A malformed argument: a bad sha256, page token, vector shape, option or file."""


class NotFoundError(ServiceError, LookupError):
    """The row asked for does not exist (or is deleted, where the function says so)."""


class ConflictError(ServiceError):
    """The request contradicts the stored state (e.g. completing a job of a deleted video)."""


class LeaseLostError(ConflictError):
    """The caller no longer holds the job's lease: another worker claimed it."""


class AlreadyExistsError(ServiceError):
    """The request would make a second thing where only one may be (an external id that
    already names another video in its collection)."""


class PermissionDeniedError(ServiceError):
    """The caller may not do this (a path outside the allowed roots)."""


class ResourceExhaustedError(ServiceError):
    """Over a size or count limit."""


class UnavailableError(ServiceError):
    """Cannot be done now; the same request may succeed later."""


class UnauthenticatedError(ServiceError):
    """No or a wrong credential."""


class DeadlineExceededError(ServiceError):
    """The call's deadline passed before the work finished."""


class CallCancelledError(ServiceError):
    """The client cancelled the call (or went away)."""
