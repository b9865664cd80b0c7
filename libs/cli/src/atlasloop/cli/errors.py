"""Failures as one line a person can act on, and an exit code per kind of failure.

Every gRPC status becomes ``<STATUS>: <the service's message>``, with a hint where the remedy is
known (a stack that is not running, a token that is not accepted); the traceback is shown only with
``atlasloop --debug``. Exit codes: 1 other, 2 invalid input, 3 not found, 4 conflict with the current
state, 5 not allowed, 6 a service or dependency not reachable, 130 interrupted.
"""

from __future__ import annotations

import grpc

from atlasloop.common.errors import AtlasError
from atlasloop.imaging.errors import ImageError

EXIT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: 2,
    grpc.StatusCode.OUT_OF_RANGE: 2,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 2,
    grpc.StatusCode.NOT_FOUND: 3,
    grpc.StatusCode.FAILED_PRECONDITION: 4,
    grpc.StatusCode.ALREADY_EXISTS: 4,
    grpc.StatusCode.ABORTED: 4,
    grpc.StatusCode.PERMISSION_DENIED: 5,
    grpc.StatusCode.UNAUTHENTICATED: 5,
    grpc.StatusCode.UNAVAILABLE: 6,
    grpc.StatusCode.DEADLINE_EXCEEDED: 6,
}
HINTS = {
    grpc.StatusCode.UNAVAILABLE: "is the stack running? 'make up' starts it, 'atlasloop status' shows it",
    grpc.StatusCode.UNAUTHENTICATED: "pass a valid --token (or ATLASLOOP_TOKEN)",
    grpc.StatusCode.PERMISSION_DENIED: "this token's role may not do that",
}


def describe(exc: BaseException) -> tuple[str, int]:
    """(one line, exit code) for a failure."""
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        code = exc.code()
        details = " ".join((exc.details() or "no details").split())
        hint = HINTS.get(code, "")
        return f"{code.name}: {details}" + (f" ({hint})" if hint else ""), EXIT_CODES.get(code, 1)
    if isinstance(exc, AtlasError):
        return f"{exc.code.name}: {exc}", EXIT_CODES.get(exc.code, 1)
    if isinstance(exc, ImageError):
        return str(exc), 2
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or exc}: no such file or folder", 2
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), 1
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    return f"{type(exc).__name__}: {exc}", 1
