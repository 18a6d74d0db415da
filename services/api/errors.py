"""Domain errors -> gRPC status codes, in this one place.

    service classes raise   services.errors (NotFoundError, PermissionDeniedError, ...),
                            the index's IndexNotReadyError, SQLAlchemy's OperationalError,
                            OSError for a full (ENOSPC, EDQUOT) or read-only (EROFS) disk
    status_of(exc)          -> (grpc.StatusCode, message a person can act on)
    with_status_codes(cls)  wraps every RPC method of a servicer class: an exception it
                            raises becomes context.abort(code, message)

Anything unexpected is INTERNAL with a generic message; its traceback goes to the log.
BulkIngest uses `status_of` for its per-item error codes, so those agree with the rest.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from services.errors import (
    AlreadyExistsError,
    CallCancelledError,
    ConflictError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServiceError,
    UnauthenticatedError,
    UnavailableError,
)
from services.index import IndexNotReadyError, IndexOutOfSyncError

logger = logging.getLogger(__name__)


# The one table from the service's error vocabulary to gRPC; the first matching class wins,
# so a subclass (LeaseLostError) maps as its base unless listed before it.
STATUS_OF_ERROR: tuple[tuple[type[ServiceError], grpc.StatusCode], ...] = (
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (ConflictError, grpc.StatusCode.FAILED_PRECONDITION),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (CallCancelledError, grpc.StatusCode.CANCELLED),
)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _disk_status(exc: OSError) -> tuple[grpc.StatusCode, str] | None:
    """A full or read-only disk is the operator's to mend, and the client's to retry; the
    message names the condition, not the server's paths."""
    if exc.errno in _DISK_FULL:
        return (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the server is out of disk space ({os.strerror(exc.errno)}) for uploads: "
            "retry later; the operator must free space under $SORA_HOME",
        )
    if exc.errno == errno.EROFS:
        return (
            grpc.StatusCode.UNAVAILABLE,
            "the server's upload folder is on a read-only file system: retry later; the "
            "operator must make $SORA_HOME writable",
        )
    return None


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message for an exception raised while answering a call."""
    for cls, code in STATUS_OF_ERROR:
        if isinstance(exc, cls):
            return code, str(exc)
    if isinstance(exc, (IndexNotReadyError, IndexOutOfSyncError)):
        return (
            grpc.StatusCode.UNAVAILABLE,
            f"the search index is not loaded ({exc}); retry in a few seconds",
        )
    if isinstance(exc, (OperationalError, PoolTimeoutError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return (
            grpc.StatusCode.UNAVAILABLE,
            f"the database is unavailable ({_first_line(exc)}); retry later",
        )
    if isinstance(exc, OSError) and (disk := _disk_status(exc)) is not None:
        return disk
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log"


def _abort(context: grpc.ServicerContext, method: str, exc: Exception) -> None:
    code, message = status_of(exc)
    if code is grpc.StatusCode.INTERNAL:
        logger.exception("%s failed", method)
    elif isinstance(exc, OSError):  # a full or read-only disk: the path, for the operator
        logger.warning("%s: %s (%s)", method, message, exc)
    elif code is grpc.StatusCode.UNAVAILABLE:
        logger.warning("%s: %s", method, message)
    else:
        logger.info("%s: %s %s", method, code.name, message)
    context.abort(code, message)


F = TypeVar("F", bound=Callable[..., Any])


def map_errors(method: F) -> F:
    """Wrap one servicer method (unary or streaming response) so that its exceptions end
    the call with `status_of`'s code and message."""
    name = method.__name__
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from method(self, request, context)
            except Exception as exc:  # noqa: BLE001 - mapped, and INTERNAL ones logged
                _abort(context, name, exc)

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001
            _abort(context, name, exc)

    return unary  # type: ignore[return-value]


C = TypeVar("C", bound=type)


def with_status_codes(service_descriptor: Any) -> Callable[[C], C]:
    """Class decorator: `map_errors` on every method the service descriptor names, so a
    method added to the proto cannot escape the mapping."""

    def wrap(cls: C) -> C:
        for m in service_descriptor.methods:
            impl = cls.__dict__.get(m.name)
            if impl is None:
                raise TypeError(f"{cls.__name__} does not implement {m.full_name}")
            setattr(cls, m.name, map_errors(impl))
        return cls

    return wrap
