"""gRPC adapter of the storage service: case import, chunked volume transfer, versioned labels, presigned URLs.

Until its behaviour lands (issue 4), every RPC answers UNIMPLEMENTED through the generated base
class: nothing pretends to work.
"""

from __future__ import annotations

from atlasloop.storage.v1 import storage_pb2_grpc


class StorageServiceServicer(storage_pb2_grpc.StorageServiceServicer):
    """Converts protobuf to domain calls and back; holds no business logic."""
