"""Domain exceptions, one per failure kind a caller can act on.

Business code raises these; one interceptor (``atlasloop.common.interceptors``) maps them to gRPC
status codes, so no handler touches ``context.set_code``.
"""

from __future__ import annotations

import grpc


class AtlasError(Exception):
    """Base class; ``code`` is the gRPC status the interceptor answers with."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInput(AtlasError):
    """The request is malformed or refers to unusable data; nothing was changed."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(AtlasError):
    """The named case, version, model set or run does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class Conflict(AtlasError):
    """The request clashes with the current state (an illegal transition, a taken lease)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(AtlasError):
    """The thing to create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class TooLarge(AtlasError):
    """The input is over a configured limit; it was refused before being read whole."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotReady(AtlasError):
    """A dependency (bucket, database, broker, Ray, a model) does not answer yet."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(AtlasError):
    """No credentials, or credentials that do not verify."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(AtlasError):
    """The caller is known but holds none of the roles the RPC needs."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Fatal(NotReady):
    """A dependency was lost in a way this process cannot recover from by itself (for example the
    Ray cluster a driver was connected to). Liveness turns NOT_SERVING so the orchestrator
    restarts the process."""
