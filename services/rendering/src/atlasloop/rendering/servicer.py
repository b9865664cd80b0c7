"""gRPC adapter of the rendering service: protobuf in, :class:`RenderingCore` calls, protobuf out."""

from __future__ import annotations

import tempfile
from pathlib import Path

from atlasloop.common import layout
from atlasloop.common.case_grants import check_case_read
from atlasloop.common.domain import LabelStyle, Plane, WindowPreset, organ_from_proto, organ_to_proto
from atlasloop.common.errors import InvalidInput
from atlasloop.common.v1 import common_pb2
from atlasloop.rendering.core import RenderingCore, View
from atlasloop.rendering.v1 import rendering_pb2, rendering_pb2_grpc


def view_of(message: rendering_pb2.SliceView) -> View:
    plane = Plane.from_proto(message.plane, default=Plane.AXIAL)
    preset = WindowPreset.from_proto(message.window) if message.window else ""  # "": level and width given
    style = LabelStyle.from_proto(message.label_style) if message.label_style else ""  # "": no labels drawn
    if message.world_mm and len(message.world_mm) != 3:
        raise InvalidInput("world_mm needs three values (x, y, z in mm)")
    layout.segment("case id", message.case_id)
    if message.label_version:
        layout.segment("label version", message.label_version)
    return View(
        case_id=message.case_id,
        label_version=message.label_version,
        plane=plane,
        index=message.index,
        world_mm=tuple(message.world_mm) if message.world_mm else None,  # type: ignore[arg-type]
        preset=preset,
        level=message.window_level,
        width=message.window_width,
        label_style=style,
        heatmap_organ=organ_from_proto(message.heatmap_organ, allow_unspecified=True),
        region_boxes=message.region_boxes,
        scale_bar=message.scale_bar,
        letters=message.orientation_letters,
        neurological=message.neurological,
        max_size=message.max_size_px,
        min_size=message.min_size_px,
    )


CHUNK_BYTES = 1024 * 1024  # well under the 8 MiB message limit


class RenderingServiceServicer(rendering_pb2_grpc.RenderingServiceServicer):
    def __init__(self, core: RenderingCore) -> None:
        self._core = core

    def RenderSlice(self, request, context):
        check_case_read(request.view.case_id)
        picture, index = self._core.render(view_of(request.view))
        return rendering_pb2.RenderSliceResponse(png=picture, index=index)

    def StreamSalientSlices(self, request, context):
        check_case_read(request.view.case_id)
        organs = [organ_from_proto(o) for o in request.organs]
        for picture, index, score, organ in self._core.salient(view_of(request.view), request.count, organs):
            yield rendering_pb2.StreamSalientSlicesResponse(
                png=picture, index=index, score=score, organ=organ_to_proto(organ)
            )

    def RenderContactSheet(self, request, context):
        check_case_read(request.case_id)
        picture = self._core.contact_sheet(
            request.case_id, request.label_version, request.tiles or 16, request.tile_px or 128
        )
        return rendering_pb2.RenderContactSheetResponse(png=picture)

    def StreamViewerFiles(self, request, context):
        check_case_read(request.case_id)
        organs = [organ_from_proto(o) for o in request.organs]
        with tempfile.TemporaryDirectory(prefix="atlasloop-viewer-") as tmp:
            for path in self._core.viewer_files(request.case_id, organs, Path(tmp), request.model_set):
                data = path.read_bytes()  # compressed uint8 heatmaps: megabytes at most
                for start in range(0, max(len(data), 1), CHUNK_BYTES):
                    yield rendering_pb2.StreamViewerFilesResponse(
                        file_name=path.name,
                        data=data[start : start + CHUNK_BYTES],
                        end_of_file=start + CHUNK_BYTES >= len(data),
                    )

    def ExportForViewer(self, request, context):
        check_case_read(request.case_id)
        with tempfile.TemporaryDirectory(prefix="atlasloop-export-") as tmp:
            written = self._core.export(
                request.case_id, request.label_version, [organ_from_proto(o) for o in request.organs], Path(tmp)
            )
        return rendering_pb2.ExportForViewerResponse(
            objects=[
                common_pb2.ObjectRef(bucket=w.bucket, key=w.key, sha256=w.sha256, size_bytes=w.size_bytes)
                for w in written
            ]
        )
