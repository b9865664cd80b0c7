"""gRPC adapter of the tracking service: cases, the review queue with leases, revisions, reviews and the audit log.

Until its behaviour lands (issue 6), every RPC answers UNIMPLEMENTED through the generated base
class: nothing pretends to work.
"""

from __future__ import annotations

from atlasloop.tracking.v1 import tracking_pb2_grpc


class TrackingServiceServicer(tracking_pb2_grpc.TrackingServiceServicer):
    """Converts protobuf to domain calls and back; holds no business logic."""
