"""The session's real components, started by the project's own stack on test ports.

Nothing here skips: a component that does not start fails the tests that need it.
"""

from __future__ import annotations

import pytest

from atlasloop.devstack.ports import Ports
from atlasloop.devstack.stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """S3 and Kafka on port slot 0, shared by the tests of this session."""
    stack = Stack(tmp_path_factory.mktemp("stack"), Ports.for_tests(0))
    try:
        stack.start_s3()
        stack.start_kafka()
        yield stack
    finally:
        stack.down()
