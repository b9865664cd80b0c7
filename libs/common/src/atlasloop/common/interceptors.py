"""The server interceptors every service runs: observation outermost, then errors, then auth.

``ObservingInterceptor`` counts and times every RPC (``atlasloop.common.metrics``) and runs it in
a server span that continues the caller's trace (``atlasloop.common.tracing``).
``ErrorInterceptor`` turns domain exceptions into status codes, a dependency's outage into
UNAVAILABLE (``atlasloop.common.outages``), and anything else into INTERNAL without leaking
internals. ``AuthInterceptor`` turns the ``authorization: Bearer ...``
metadata into a :class:`~atlasloop.common.auth.Principal`, checks the RPC's declared roles and
makes the principal available to handlers through ``current_principal()``. Health and reflection
stay open so that kubelet probes and ``grpcurl`` need no token.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from atlasloop.common import auth, case_grants, metrics, tracing
from atlasloop.common.domain import Role
from atlasloop.common.errors import AtlasError, Unauthenticated
from atlasloop.common.outages import outage

log = logging.getLogger(__name__)

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

Behaviour = Callable[[Any, grpc.ServicerContext], Any]
Continuation = Callable[[grpc.HandlerCallDetails], Any]


def _wrap(handler: grpc.RpcMethodHandler[Any, Any], guard: Callable[[Behaviour, bool], Behaviour]) -> Any:
    """Rebuild ``handler`` with its behaviour passed through ``guard(behaviour, streams_out)``."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            guard(handler.unary_unary, False),
            handler.request_deserializer,
            handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            guard(handler.unary_stream, True),
            handler.request_deserializer,
            handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            guard(handler.stream_unary, False),
            handler.request_deserializer,
            handler.response_serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        guard(handler.stream_stream, True),  # type: ignore[arg-type]
        handler.request_deserializer,
        handler.response_serializer,
    )


def _abort(context: grpc.ServicerContext, method: str, exc: Exception) -> None:
    if isinstance(exc, NotImplementedError):  # the generated base servicer's answer
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    if isinstance(exc, AtlasError):
        log.info("rpc refused", extra={"rpc": method, "code": exc.code.name, "reason": str(exc)})
        context.abort(exc.code, str(exc))
    if why := outage(exc):  # a dependency is away: the caller may try again
        log.warning("rpc failed on an outage", extra={"rpc": method, "reason": why})
        context.abort(grpc.StatusCode.UNAVAILABLE, f"a dependency is unavailable ({why}); try again")
    log.exception("rpc failed", extra={"rpc": method})
    context.abort(grpc.StatusCode.INTERNAL, "internal error; see the service log")


def _code(context: grpc.ServicerContext, failed: bool) -> str:
    code = context.code() if hasattr(context, "code") else None  # set by abort or set_code
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN" if failed else "OK"


class ObservingInterceptor(grpc.ServerInterceptor):
    """Every RPC counted by method and status code, timed, and traced (health checks untraced)."""

    def intercept_service(self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        traced = not method.startswith(OPEN_PREFIXES)

        def parent() -> dict[str, str]:
            return {k: str(v) for k, v in handler_call_details.invocation_metadata or () if k in TRACE_KEYS}

        def guard(behaviour: Behaviour, streams_out: bool) -> Behaviour:
            if streams_out:

                def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                    started, failed = time.perf_counter(), True
                    try:
                        if traced:
                            with tracing.span(method, parent(), tracing.SpanKind.SERVER):
                                yield from behaviour(request, context)
                        else:
                            yield from behaviour(request, context)
                        failed = False
                    finally:
                        metrics.rpc(method, _code(context, failed), time.perf_counter() - started)

                return streaming

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                started, failed = time.perf_counter(), True
                try:
                    if traced:
                        with tracing.span(method, parent(), tracing.SpanKind.SERVER):
                            response = behaviour(request, context)
                    else:
                        response = behaviour(request, context)
                    failed = False
                    return response
                finally:
                    metrics.rpc(method, _code(context, failed), time.perf_counter() - started)

            return unary

        return _wrap(handler, guard)


TRACE_KEYS = frozenset({"traceparent", "tracestate"})


class ErrorInterceptor(grpc.ServerInterceptor):
    """Map :class:`AtlasError` subclasses to their status codes."""

    def intercept_service(self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        def guard(behaviour: Behaviour, streams_out: bool) -> Behaviour:
            if streams_out:

                def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                    try:
                        yield from behaviour(request, context)
                    except Exception as exc:  # noqa: BLE001 - mapped, logged, never swallowed
                        _abort(context, method, exc)

                return streaming

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return behaviour(request, context)
                except Exception as exc:  # noqa: BLE001 - mapped, logged, never swallowed
                    _abort(context, method, exc)

            return unary

        return _wrap(handler, guard)


class AuthInterceptor(grpc.ServerInterceptor):
    """Authenticate the bearer token and enforce the RPC's declared roles."""

    def __init__(
        self, authenticator: auth.Authenticator, policy: dict[str, frozenset[Role]], grant_key: bytes | None = None
    ) -> None:
        self._authenticator = authenticator
        self._policy = policy
        self._grant_key = grant_key

    def _principal(self, details: grpc.HandlerCallDetails) -> auth.Principal:
        metadata = dict(details.invocation_metadata or ())
        header = str(metadata.get("authorization", ""))
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        principal = self._authenticator.authenticate(token.strip())
        auth.authorize(principal, self._policy[details.method], details.method)
        grants = [str(v) for k, v in details.invocation_metadata or () if k == case_grants.HEADER]
        if grants:  # the cases this caller may read, from grants made out to them
            cases = case_grants.verified_cases(self._grant_key, principal.name, grants)
            principal = dataclasses.replace(principal, cases=cases)
        return principal

    def intercept_service(self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if method not in self._policy:
            raise RuntimeError(f"{method} is served but has no role policy")

        def guard(behaviour: Behaviour, streams_out: bool) -> Behaviour:
            if streams_out:

                def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                    token = auth.set_current_principal(self._principal(handler_call_details))
                    try:
                        yield from behaviour(request, context)
                    finally:
                        auth.reset_current_principal(token)

                return streaming

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                token = auth.set_current_principal(self._principal(handler_call_details))
                try:
                    return behaviour(request, context)
                finally:
                    auth.reset_current_principal(token)

            return unary

        return _wrap(handler, guard)
