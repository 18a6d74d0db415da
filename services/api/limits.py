"""What keeps slow or stalled clients from taking the server's threads.

gRPC's sync server runs each call on a pool thread for as long as the call is open; a
client stream waiting for its next message holds one too. So:

    check_pool(workers, cap)   at start-up: the calls let in (cap) plus HEALTH_THREADS must
                               fit the pool, so a call let in is never queued behind others
    CallLimiter                interceptor: at most `cap` calls at once, health checks
                               excepted; beyond it RESOURCE_EXHAUSTED at once ("overloaded")
    StreamGuard.guard(it, ctx) a client stream's messages; the stream is cancelled when the
                               client sends nothing for `idle_s` (its thread is freed), and
                               ended with DEADLINE_EXCEEDED once it has lasted `max_s`

    health check --------------------------------------> a pool thread (HEALTH_THREADS kept)
    any other call --> CallLimiter (cap) --RESOURCE_EXHAUSTED beyond
                            |--> a pool thread --> StreamGuard (client streams)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from services.errors import DeadlineExceededError

logger = logging.getLogger(__name__)

# Threads kept for health checks beyond the calls let in: a load balancer's probe must be
# answered ("overloaded" at worst), never left waiting behind stalled streams.
HEALTH_THREADS = 2
HEALTH_CHECK = "/grpc.health.v1.Health/Check"

T = TypeVar("T")


def check_pool(max_workers: int, max_concurrent_rpcs: int) -> None:
    """ValueError unless `max_concurrent_rpcs` calls plus HEALTH_THREADS fit the pool."""
    if max_concurrent_rpcs + HEALTH_THREADS > max_workers:
        raise ValueError(
            f"$SORA_MAX_CONCURRENT_RPCS ({max_concurrent_rpcs}) must be at most "
            f"$SORA_API_WORKERS ({max_workers}) - {HEALTH_THREADS}: each open call holds a "
            "thread, and calls beyond the pool would wait behind stalled ones (health too)"
        )


def _wrap_handler(handler: grpc.RpcMethodHandler, limited: Callable) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour run through `limited(behaviour, streaming_response)`."""
    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(limited(handler.stream_stream, True), **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(limited(handler.stream_unary, False), **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(limited(handler.unary_stream, True), **kw)
    return grpc.unary_unary_rpc_method_handler(limited(handler.unary_unary, False), **kw)


class CallLimiter(grpc.ServerInterceptor):
    """At most `cap` calls at once (health checks excepted); more are refused at once with
    RESOURCE_EXHAUSTED. The slot is taken and given back on the call's own thread, so a
    call that never runs never holds one."""

    def __init__(self, cap: int, *, exempt: tuple[str, ...] = (HEALTH_CHECK,)) -> None:
        if cap < 1:
            raise ValueError(f"cap {cap}: expected >= 1")
        self.cap = cap
        self._exempt = exempt
        self._lock = threading.Lock()  # a count under a lock: a Semaphore is Python code
        self.active = 0  # calls holding a slot
        # method -> (the handler gRPC gave, its limited wrapper): a method's handler is the
        # same object call after call, so it is wrapped once, not on gRPC's poller thread
        # for every call (an auth refusal's handler is new each time: checked by identity)
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def _enter(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            full = self.active >= self.cap
            if not full:
                self.active += 1
        if full:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server is busy ({self.cap} calls in progress, $SORA_MAX_CONCURRENT_RPCS); "
                "retry with back-off",
            )
            raise RuntimeError("abort returned")  # gRPC's raises; a slot was never taken

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    def _limited(self, behaviour: Callable, streaming_response: bool) -> Callable:
        if streaming_response:

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                self._enter(context)
                try:
                    yield from behaviour(request, context)
                finally:
                    self._leave()

            return stream

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            self._enter(context)
            try:
                return behaviour(request, context)
            finally:
                self._leave()

        return unary

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in self._exempt:
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _wrap_handler(handler, self._limited)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class _Watched:
    """One open client stream: since when it waits for a message (None: not waiting)."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self.cancel = cancel
        self.waiting_since: float | None = None
        self.idled_out = False


class StreamGuard:
    """Watches open client streams from one thread: a stream whose client has sent nothing
    for `idle_s` is cancelled (the handler's wait for the next message ends, and with it
    the call, freeing its thread). A stream still sending after `max_s` is ended with
    DEADLINE_EXCEEDED at its next message."""

    def __init__(self, idle_s: float, max_s: float | None = None) -> None:
        if idle_s <= 0:
            raise ValueError(f"idle_s {idle_s}: expected > 0")
        self.idle_s = idle_s
        self.max_s = max_s
        self._streams: set[_Watched] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def guard(self, requests: Iterator[T], context: grpc.ServicerContext) -> Iterator[T]:
        """`requests`, watched while the caller iterates over it."""
        watched = _Watched(context.cancel)
        started = time.monotonic()
        self._add(watched)
        try:
            while True:
                watched.waiting_since = time.monotonic()
                try:
                    message = next(requests)
                except StopIteration:
                    return
                except grpc.RpcError:
                    if watched.idled_out:
                        raise self._idle_error() from None
                    raise
                finally:
                    watched.waiting_since = None
                if watched.idled_out:
                    raise self._idle_error()
                if self.max_s is not None and time.monotonic() - started > self.max_s:
                    raise DeadlineExceededError(
                        f"the upload took longer than {self.max_s:.0f} s "
                        "($SORA_UPLOAD_TIME_LIMIT): send the file faster, or ask the operator"
                    )
                yield message
        finally:
            with self._lock:
                self._streams.discard(watched)

    def _idle_error(self) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"the client sent nothing for {self.idle_s:.0f} s ($SORA_STREAM_IDLE_TIMEOUT)"
        )

    def _add(self, watched: _Watched) -> None:
        with self._lock:
            self._streams.add(watched)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="sora-stream-guard", daemon=True
                )
                self._thread.start()

    def _watch(self) -> None:
        """Cancel idle streams; the thread ends when no stream is open (`_add` restarts it)."""
        tick = min(self.idle_s / 4, 1.0)
        while True:
            time.sleep(tick)
            now = time.monotonic()
            with self._lock:
                if not self._streams:
                    self._thread = None
                    return
                idle = [
                    w
                    for w in self._streams
                    if not w.idled_out
                    and w.waiting_since is not None
                    and now - w.waiting_since > self.idle_s
                ]
                for w in idle:
                    w.idled_out = True
            for w in idle:
                logger.info("a client stream sent nothing for %.0f s: cancelled", self.idle_s)
                w.cancel()
