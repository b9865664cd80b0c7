"""gRPC adapter of the inference service: the multi-architecture ensemble on Ray Serve and the model registry.

Until its behaviour lands (issue 7), every RPC answers UNIMPLEMENTED through the generated base
class: nothing pretends to work.
"""

from __future__ import annotations

from atlasloop.inference.v1 import inference_pb2_grpc


class InferenceServiceServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Converts protobuf to domain calls and back; holds no business logic."""
