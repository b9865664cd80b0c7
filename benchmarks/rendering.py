"""Rendering benchmark: a 512x512x300 CT with a label map and an attention map in S3, over gRPC on
loopback. Time to first slice of a case not yet cached, from storage's display copies (CT and
label version; the renderer reads the slice's bricks) and from the .nii.gz files alone (the same
case twice), then per-slice latency scrolling on from there with every layer (window, label
contours, heatmap, region boxes, letters, scale bar), p50 and p99."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from scipy import ndimage

from atlasloop.common import layout
from atlasloop.common.layout import ensemble_key
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.server import GrpcService
from atlasloop.imaging import display_copy
from atlasloop.imaging.volume import Volume, save_nifti
from atlasloop.method.simulate import simulate
from atlasloop.rendering.app import build
from atlasloop.rendering.settings import RenderingSettings
from atlasloop.rendering.v1 import rendering_pb2, rendering_pb2_grpc
from atlasloop.scoring.core import ScoringCore

SHAPE = (512, 512, 300)


class _NoEvents:
    def publish(self, *_):
        raise AssertionError("no events in the benchmark")


def slices(stack) -> list[str]:
    s3 = stack.s3_settings(bucket="bench-rendering")
    store = ObjectStore(s3)
    store.check_bucket()
    affine = np.diag([0.8, 0.8, 1.0, 1.0])
    rng = np.random.default_rng(0)
    body = ndimage.zoom(rng.standard_normal((16, 16, 10)), (32, 32, 30), order=1)
    ct = np.clip(body * 150 + rng.normal(0, 15, SHAPE), -1024, 2000).astype(np.int16)
    labels = np.zeros(SHAPE, np.uint8)
    labels[150:350, 150:330, 80:220] = 5
    labels[360:440, 200:300, 100:200] = 8
    small = labels[::4, ::4, ::4]  # attention on a coarser grid, as the model grid is
    output = simulate(small, affine @ np.diag([4.0, 4.0, 4.0, 1.0]), np.random.default_rng(1))
    started = time.perf_counter()
    display = display_copy.encode(Volume(ct, affine))
    encode_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        ct_path = save_nifti(Volume(ct, affine), Path(tmp) / "ct.nii.gz")
        label_path = save_nifti(Volume(labels, affine), Path(tmp) / "l.nii.gz")
        for case in ("big", "big-nifti"):  # the same case with and without storage's display copy
            store.put_file(layout.ct_key(case), ct_path)
            store.put_file(layout.label_key(case, "v1"), label_path)
            store.put_bytes(ensemble_key(case, "ms-1"), output.to_bytes())
            ScoringCore(store, _NoEvents(), "reference").score(case, "ms-1", publish=False)
        store.put_bytes(layout.display_ct_key("big"), display)
        label_display = display_copy.encode(Volume(labels, affine))
        store.put_bytes(layout.display_label_key("big", "v1"), label_display)
        nifti_mb = ct_path.stat().st_size / 1e6
    settings = RenderingSettings(port=0, health_poll_s=60, s3=s3, auth={"dev_tokens": {"t": "b:reviewer"}})
    service = GrpcService(build(settings), settings)
    service.start()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{service.port}", options=[("grpc.max_receive_message_length", 32 * 2**20)]
    )
    stub = rendering_pb2_grpc.RenderingServiceStub(channel)
    md = [("authorization", "Bearer t")]

    def view(index: int, case: str = "big") -> rendering_pb2.RenderSliceRequest:
        return rendering_pb2.RenderSliceRequest(
            view=rendering_pb2.SliceView(
                case_id=case,
                label_version="v1",
                plane=rendering_pb2.PLANE_AXIAL,
                index=index,
                window=rendering_pb2.WINDOW_PRESET_ABDOMEN,
                label_style=rendering_pb2.LABEL_STYLE_CONTOUR,
                heatmap_organ=5,
                region_boxes=True,
                orientation_letters=True,
                scale_bar=True,
            )
        )

    started = time.perf_counter()  # the display copy first: any warm-up cost falls on it, not on the NIfTI
    stub.RenderSlice(view(150), metadata=md)
    first = time.perf_counter() - started
    started = time.perf_counter()
    stub.RenderSlice(view(150, "big-nifti"), metadata=md)
    first_nifti = time.perf_counter() - started
    times = []
    for index in range(100, 200):
        started = time.perf_counter()
        reply = stub.RenderSlice(view(index), metadata=md)
        times.append(time.perf_counter() - started)
    channel.close()
    service.stop(0)
    ms = np.asarray(times) * 1000
    return [
        "512x512x300 int16 CT (.nii.gz), label map, attention on a 4x coarser grid; axial, all layers",
        f"time to first slice (download, decompress, cache): {first:.2f} s from the display copies "
        f"(CT {len(display) / 1e6:.0f} MB, written in {encode_s:.2f} s at import; labels "
        f"{len(label_display) / 1e6:.1f} MB), {first_nifti:.2f} s from the .nii.gz files (CT {nifti_mb:.0f} MB); "
        f"ratio {first_nifti / first:.1f}x (target < 1 s)",
        "slices 100-199 in turn over gRPC (each layer of 64 slices' bricks read when first reached): "
        f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms "
        f"(target p50 < 30 ms); PNG {len(reply.png) / 1024:.0f} KiB",
    ]
