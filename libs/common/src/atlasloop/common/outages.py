"""Telling a dependency's outage from a bug.

A refused connection to S3, a PostgreSQL that restarts, a peer service that answers UNAVAILABLE or
a broker that is away are outages: the same request succeeds once the dependency is back. They
must not be reported as INTERNAL (a client would not retry) nor count as a poison event's tries
(an event would be dead-lettered because S3 was down for a minute). ``outage`` names the outage
behind an exception, looking through its chain of causes, or returns None for anything else.
"""

from __future__ import annotations

import grpc
import sqlalchemy.exc
import urllib3.exceptions
from confluent_kafka import KafkaException

from atlasloop.common.errors import NotReady

# Status codes a peer answers when it, or what it depends on, is away for now.
_PEER_OUTAGE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def outage(exc: BaseException) -> str | None:
    """A short description of the outage behind ``exc`` ("S3: ...", "database: ..."), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _direct(current)
        if found:
            return found
        current = current.__cause__ or current.__context__
    return None


def _direct(exc: BaseException) -> str | None:
    if isinstance(exc, NotReady):
        return str(exc)
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return f"database: {type(exc.orig).__name__ if exc.orig else type(exc).__name__}"
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return "database: connection lost"
    if isinstance(exc, urllib3.exceptions.MaxRetryError | urllib3.exceptions.ProtocolError):
        return f"S3: {type(exc).__name__}"
    if isinstance(exc, urllib3.exceptions.NewConnectionError | urllib3.exceptions.TimeoutError):
        return f"S3: {type(exc).__name__}"
    if isinstance(exc, KafkaException):
        return f"broker: {exc}"
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call) and exc.code() in _PEER_OUTAGE:
        return f"peer service: {exc.code().name}"
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"connection: {type(exc).__name__}"
    return None
