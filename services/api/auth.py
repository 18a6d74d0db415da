"""Bearer-token auth: a server interceptor checks `authorization: Bearer <token>` on every
method except the ones whose full name starts with an exempt prefix (health checks).

The rejecting handler has the same shape (unary/stream in and out) as the method it
replaces, so a client-streaming upload is refused with UNAUTHENTICATED like a unary call.
Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc

logger = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"
HEADER = "authorization"


def _handler_like(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> Any:
    """A method handler of `handler`'s kind that ends every call with (code, message)."""

    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    def deny_stream(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)
        yield  # pragma: no cover - abort raises

    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny_stream, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny_stream, **kw)
    return grpc.unary_unary_rpc_method_handler(deny, **kw)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str, *, exempt_prefixes: Sequence[str] = (HEALTH_PREFIX,)) -> None:
        if not token:
            raise ValueError("an empty token would let anyone in")
        self._expected = f"Bearer {token}".encode()
        self._exempt = tuple(exempt_prefixes)

    def _check(self, metadata: Sequence[tuple[str, Any]] | None) -> str | None:
        """None when the call may go on, else why not."""
        values = [v for k, v in (metadata or ()) if k.lower() == HEADER]
        if not values:
            return (
                "missing credentials: send the metadata 'authorization: Bearer <token>' "
                "with the server's token ($SORA_API_TOKEN)"
            )
        value = values[0]
        got = value if isinstance(value, bytes) else str(value).encode()
        if len(values) > 1 or not hmac.compare_digest(got, self._expected):
            return "invalid bearer token: check the token the client sends ($SORA_API_TOKEN)"
        return None

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method.startswith(self._exempt):
            return continuation(handler_call_details)
        problem = self._check(handler_call_details.invocation_metadata)
        handler = continuation(handler_call_details)
        if problem is None or handler is None:
            return handler  # None: an unknown method, answered UNIMPLEMENTED by gRPC
        logger.info("%s refused: %s", method, problem.split(":")[0])
        return _handler_like(handler, grpc.StatusCode.UNAUTHENTICATED, problem)
