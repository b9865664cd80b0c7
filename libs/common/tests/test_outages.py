"""An outage is told from a bug by the exception and its causes."""

from __future__ import annotations

import grpc
import sqlalchemy.exc
import urllib3.exceptions
from confluent_kafka import KafkaError, KafkaException

from atlasloop.common.errors import InvalidInput, NotReady
from atlasloop.common.outages import outage


class _Answer(grpc.RpcError, grpc.Call):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return ""

    def initial_metadata(self):
        return ()

    def trailing_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


def test_outages_of_each_dependency_are_recognised_through_their_causes():
    refused = urllib3.exceptions.NewConnectionError(None, "Connection refused")
    s3 = urllib3.exceptions.MaxRetryError(None, "/bucket/key", refused)
    database = sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))
    try:
        try:
            raise s3
        except Exception as inner:
            raise RuntimeError("while storing the label") from inner
    except RuntimeError as wrapped:
        assert outage(wrapped) == "S3: MaxRetryError"
    assert outage(database).startswith("database:")
    assert outage(KafkaException(KafkaError(KafkaError._TRANSPORT))).startswith("broker:")
    assert outage(_Answer(grpc.StatusCode.UNAVAILABLE)) == "peer service: UNAVAILABLE"
    assert outage(NotReady("bucket missing")) == "bucket missing"
    assert outage(ConnectionResetError()) == "connection: ConnectionResetError"


def test_a_bug_or_a_refusal_is_not_an_outage():
    assert outage(ValueError("bad")) is None
    assert outage(InvalidInput("bad id")) is None
    assert outage(_Answer(grpc.StatusCode.INVALID_ARGUMENT)) is None
    assert outage(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))) is None
