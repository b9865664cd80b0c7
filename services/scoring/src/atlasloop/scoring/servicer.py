"""gRPC adapter of the scoring service: attention maps, attention regions and priorities.

Until its behaviour lands (issue 5), every RPC answers UNIMPLEMENTED through the generated base
class: nothing pretends to work.
"""

from __future__ import annotations

from atlasloop.scoring.v1 import scoring_pb2_grpc


class ScoringServiceServicer(scoring_pb2_grpc.ScoringServiceServicer):
    """Converts protobuf to domain calls and back; holds no business logic."""
