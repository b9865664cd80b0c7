"""Streams may not starve a server. gRPC's synchronous server runs each RPC on a worker thread for
as long as it lasts, so a stream that is held open, or a request stream that stops sending, pins a
thread; enough of them and every RPC and probe waits. Three rules, one interceptor:

- the RPCs open to anyone (health, reflection) share ``max_open_streams`` streaming slots (a
  health ``Watch`` also answers once and ends, see ``server.OnceHealthServicer``);
- each principal holds at most ``max_streams_per_principal`` streams at a time;
- every stream ends after ``stream_max_s``; a request stream that sends nothing for
  ``stream_idle_s`` is cancelled (a watchdog thread cancels the RPC, which frees its thread; the
  client sees CANCELLED, the log says why: gRPC sends no status of ours after a cancel).

Beyond a limit the answer is RESOURCE_EXHAUSTED at once, naming the limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from atlasloop.common import auth
from atlasloop.common.errors import TooLarge

log = logging.getLogger(__name__)
OPEN = "(unauthenticated)"


@dataclass
class _Stream:
    context: grpc.ServicerContext
    started: float
    last_request: float
    watches_requests: bool
    reason: str = ""


@dataclass
class StreamLimits:
    max_open_streams: int = 2
    max_streams_per_principal: int = 8
    stream_idle_s: float = 60.0
    stream_max_s: float = 3600.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _held: dict[str, int] = field(default_factory=dict)
    _streams: dict[int, _Stream] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, every_s: float = 1.0) -> None:
        self._thread = threading.Thread(target=self._watch, args=(every_s,), name="stream-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.cancel_overdue(time.monotonic())

    def cancel_overdue(self, now: float) -> int:
        """Cancel streams past their deadlines; how many were cancelled."""
        with self._lock:
            overdue = []
            for stream in self._streams.values():
                if now - stream.started > self.stream_max_s:
                    stream.reason = f"stream ended after the {self.stream_max_s:.0f} s limit"
                elif stream.watches_requests and now - stream.last_request > self.stream_idle_s:
                    stream.reason = f"request stream idle for {self.stream_idle_s:.0f} s"
                else:
                    continue
                overdue.append(stream)
        for stream in overdue:
            log.warning("stream cancelled", extra={"reason": stream.reason})
            stream.context.cancel()  # unblocks the worker thread; the client sees CANCELLED
        return len(overdue)

    # ---- holding a slot ----

    def acquire(self, who: str, context: grpc.ServicerContext, watches_requests: bool) -> int:
        cap = self.max_open_streams if who == OPEN else self.max_streams_per_principal
        with self._lock:
            if self._held.get(who, 0) >= cap:
                what = "unauthenticated streams" if who == OPEN else f"streams of {who}"
                raise TooLarge(f"too many open {what} (at most {cap}); close one and retry")
            self._held[who] = self._held.get(who, 0) + 1
            now = time.monotonic()
            key = id(context)
            self._streams[key] = _Stream(context, now, now, watches_requests)
            return key

    def touch(self, key: int) -> None:
        with self._lock:
            stream = self._streams.get(key)
            if stream is not None:
                stream.last_request = time.monotonic()

    def release(self, who: str, key: int) -> str:
        """Free the slot; the reason the watchdog cancelled the stream, if it did."""
        with self._lock:
            self._held[who] = max(0, self._held.get(who, 0) - 1)
            stream = self._streams.pop(key, None)
        return stream.reason if stream is not None else ""

    def held(self, who: str) -> int:
        with self._lock:
            return self._held.get(who, 0)


Behaviour = Callable[[Any, grpc.ServicerContext], Any]


class StreamLimitInterceptor(grpc.ServerInterceptor):
    """Applies ``StreamLimits`` to every streaming RPC (after authentication, so the principal is
    known; the open RPCs count as one principal)."""

    def __init__(self, limits: StreamLimits, open_prefixes: tuple[str, ...]) -> None:
        self.limits = limits
        self._open = open_prefixes

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        open_rpc = details.method.startswith(self._open)
        limits = self.limits

        def who() -> str:
            return OPEN if open_rpc else auth.current_principal().name

        def requests_of(key: int, request_iterator: Iterator[Any]) -> Iterator[Any]:
            for request in request_iterator:
                limits.touch(key)
                yield request

        def run(behaviour: Behaviour, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            principal = who()
            key = limits.acquire(principal, context, handler.request_streaming)
            try:
                argument = requests_of(key, request) if handler.request_streaming else request
                yield from behaviour(argument, context)
            finally:
                reason = limits.release(principal, key)
                if reason:
                    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, reason)

        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                lambda r, c: run(handler.unary_stream, r, c),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                lambda r, c: run(handler.stream_stream, r, c),
                handler.request_deserializer,
                handler.response_serializer,
            )

        def unary_reply(request_iterator: Any, context: grpc.ServicerContext) -> Any:
            principal = who()
            key = limits.acquire(principal, context, True)
            try:
                return handler.stream_unary(requests_of(key, request_iterator), context)
            finally:
                reason = limits.release(principal, key)
                if reason:
                    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, reason)

        return grpc.stream_unary_rpc_method_handler(
            unary_reply, handler.request_deserializer, handler.response_serializer
        )
