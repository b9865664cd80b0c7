"""gRPC adapter of the rendering service: CT slices with labels and saliency heatmaps for viewers.

Until its behaviour lands (issue 8), every RPC answers UNIMPLEMENTED through the generated base
class: nothing pretends to work.
"""

from __future__ import annotations

from atlasloop.rendering.v1 import rendering_pb2_grpc


class RenderingServiceServicer(rendering_pb2_grpc.RenderingServiceServicer):
    """Converts protobuf to domain calls and back; holds no business logic."""
