"""gRPC adapter of the training service: event-driven fine-tuning on Ray Train, gating and publishing.

Until its behaviour lands (issue 9), every RPC answers UNIMPLEMENTED through the generated base
class: nothing pretends to work.
"""

from __future__ import annotations

from atlasloop.training.v1 import training_pb2_grpc


class TrainingServiceServicer(training_pb2_grpc.TrainingServiceServicer):
    """Converts protobuf to domain calls and back; holds no business logic."""
