"""What a service method needs to know about the call it serves: time left, and whether the
client is still there. Service classes take a `Call` and run `call.check()` between units
of long work; plain callers (tests, scripts) pass `Call()` (no deadline, never cancelled).

    Call.of(context)   from a grpc.ServicerContext: time_remaining() and is_active()
    call.check()       raises DeadlineExceededError or CallCancelledError
    call.remaining()   seconds left, or None when the call has no deadline
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.errors import CallCancelledError, DeadlineExceededError


class Call:
    def __init__(
        self,
        time_remaining: Callable[[], float | None] | None = None,
        is_active: Callable[[], bool] | None = None,
    ) -> None:
        self._time_remaining = time_remaining or (lambda: None)
        self._is_active = is_active or (lambda: True)

    @classmethod
    def of(cls, context: Any) -> Call:
        return cls(context.time_remaining, context.is_active)

    def remaining(self) -> float | None:
        return self._time_remaining()

    def active(self) -> bool:
        """False once the client cancelled or the deadline passed."""
        left = self._time_remaining()
        return self._is_active() and (left is None or left > 0)

    def check(self) -> None:
        left = self._time_remaining()
        if left is not None and left <= 0:
            raise DeadlineExceededError("the call's deadline passed before the work finished")
        if not self._is_active():
            raise CallCancelledError("the client cancelled the call")
