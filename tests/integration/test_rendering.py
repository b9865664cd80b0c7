"""Rendering on the real CT through the real S3: geometry-strict golden checks, the gRPC surface,
salient slices, contact sheet, exports, and refusals."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from PIL import Image

from atlasloop.common import case_grants, layout
from atlasloop.common.domain import organ_to_proto
from atlasloop.common.layout import ensemble_key
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging import display_copy
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.labels import ORGAN_IDS, from_totalsegmentator
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti
from atlasloop.method.simulate import simulate
from atlasloop.rendering.app import build
from atlasloop.rendering.bricks import BrickedVolume, CompleteVolume
from atlasloop.rendering.core import RenderingCore, View
from atlasloop.rendering.settings import RenderingSettings
from atlasloop.rendering.v1 import rendering_pb2, rendering_pb2_grpc
from atlasloop.rendering.volumes import VolumeSource
from atlasloop.scoring.core import ScoringCore

from .conftest import start_in_process

pytestmark = pytest.mark.integration
KEY = "rendering-test-grant-key"
CASE = "real-render"


@pytest.fixture(scope="module")
def rendered_case(stack, real_ct_dir, tmp_path_factory):
    """The real CT, its labels and attention scored by the scoring service's own code, in S3."""
    settings = stack.s3_settings(bucket="rendering-tests")
    store = ObjectStore(settings)
    store.check_bucket()
    tmp = tmp_path_factory.mktemp("render")
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    labels = from_totalsegmentator(load_nifti(real_ct_dir / "example_seg.nii.gz").array)
    store.put_file(layout.ct_key(CASE), real_ct_dir / "example_ct_sm.nii.gz")
    store.put_file(layout.label_key(CASE, "v1"), save_nifti(Volume(labels, ct.affine), tmp / "v1.nii.gz"))
    output = simulate(labels, ct.affine, np.random.default_rng(3))
    store.put_bytes(ensemble_key(CASE, "ms-1"), output.to_bytes())

    class _NoEvents:
        def publish(self, *_):
            raise AssertionError("not publishing in this test")

    ScoringCore(store, _NoEvents(), "reference").score(CASE, "ms-1", publish=False)
    core = RenderingCore(VolumeSource(store, 512 * 2**20, "reference"), store, 2048, 16)
    return core, ct, labels, store


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.int16)


def _expected_axial(mask_ras: np.ndarray, k: int) -> np.ndarray:
    """Radiological axial display of a RAS mask, written out independently of the renderer."""
    return mask_ras[:, :, k].T[::-1, ::-1]


def test_labels_land_on_their_voxels_and_patient_right_is_image_left(rendered_case):
    core, _, labels, _ = rendered_case
    k = int(np.argmax((labels == ORGAN_IDS["liver"]).sum(axis=(0, 1))))
    plain, _ = core.render(View(CASE, plane="axial", index=k))
    filled, _ = core.render(View(CASE, "v1", "axial", k, label_style="fill"))
    changed = np.any(_pixels(plain) != _pixels(filled), axis=2)
    expected = _expected_axial(labels > 0, k)  # the example is stored RAS, spacing 3 x 3 mm: 1 px per voxel
    assert changed.shape == expected.shape
    assert (changed & expected).sum() / (changed | expected).sum() > 0.97
    liver = _expected_axial(labels == ORGAN_IDS["liver"], k)
    spleen = _expected_axial(labels == ORGAN_IDS["spleen"], k)
    assert np.nonzero(liver)[1].mean() < changed.shape[1] / 2 < np.nonzero(spleen)[1].mean()


def test_contours_are_drawn_on_organ_boundary_voxels(rendered_case):
    core, _, labels, _ = rendered_case
    k = int(np.argmax((labels == ORGAN_IDS["spleen"]).sum(axis=(0, 1))))
    plain, _ = core.render(View(CASE, plane="axial", index=k))
    contour, _ = core.render(View(CASE, "v1", "axial", k, label_style="contour"))
    drawn = np.any(_pixels(plain) != _pixels(contour), axis=2)
    organ = _expected_axial(labels > 0, k)
    assert drawn.any() and (drawn & organ).sum() == drawn.sum()  # only on labelled pixels
    interior = organ.copy()
    interior[1:-1, 1:-1] &= organ[:-2, 1:-1] & organ[2:, 1:-1] & organ[1:-1, :-2] & organ[1:-1, 2:]
    assert (drawn & interior).sum() < 0.1 * drawn.sum()  # interiors stay clear (organ-organ borders excepted)


def test_an_organ_without_attention_draws_nothing_and_one_with_attention_does(rendered_case):
    core, _, _, _ = rendered_case
    attention = core.source.attention(CASE)
    quiet = next(o for o, c in attention.organs.items() if c.box is None or not c.data.any())
    loud = max(attention.organs, key=lambda o: int(attention.organs[o].data.sum()))
    plain, _ = core.render(View(CASE, plane="axial", index=15))
    assert core.render(View(CASE, plane="axial", index=15, heatmap_organ=quiet))[0] == plain
    best = core.salient(View(CASE, plane="axial"), 1, [loud])
    picture, index, score, organ = next(best)
    assert organ == loud and score > 0
    assert picture != core.render(View(CASE, plane="axial", index=index))[0]


def test_grpc_surface_salient_stream_contact_sheet_export_and_refusals(stack, rendered_case, tmp_path):
    _, ct, _, store = rendered_case
    settings = RenderingSettings(
        port=0,
        health_poll_s=60,
        s3=stack.s3_settings(bucket="rendering-tests"),
        cache_bytes=64 * 2**20,
        auth={"dev_tokens": {"ann": "a:annotator", "bob": "b:annotator"}, "grant_key": KEY},
    )
    service, channel = start_in_process(build(settings), settings)
    md = [("authorization", "Bearer ann"), (case_grants.HEADER, case_grants.issue(KEY.encode(), "a", CASE, 600))]
    try:
        stub = rendering_pb2_grpc.RenderingServiceStub(channel)
        # An annotator reads a case only with a grant tracking made out to them for it.
        plain = rendering_pb2.RenderSliceRequest(view=rendering_pb2.SliceView(case_id=CASE, index=5))
        for refused in (
            [("authorization", "Bearer ann")],  # no grant
            [("authorization", "Bearer bob"), md[1]],  # a's grant shown by b
            [md[0], (case_grants.HEADER, case_grants.issue(KEY.encode(), "a", "other-case", 600))],
            [md[0], (case_grants.HEADER, case_grants.issue(b"not the key", "a", CASE, 600))],  # forged
            [md[0], (case_grants.HEADER, case_grants.issue(KEY.encode(), "a", CASE, 600, now=0))],  # expired
        ):
            with pytest.raises(grpc.RpcError) as err:
                stub.RenderSlice(plain, metadata=refused)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "GrantCase" in err.value.details()
        view = rendering_pb2.SliceView(
            case_id=CASE,
            label_version="v1",
            plane=rendering_pb2.PLANE_CORONAL,
            index=50,
            window=rendering_pb2.WINDOW_PRESET_ABDOMEN,
            label_style=rendering_pb2.LABEL_STYLE_CONTOUR,
            orientation_letters=True,
            scale_bar=True,
        )
        reply = stub.RenderSlice(rendering_pb2.RenderSliceRequest(view=view), metadata=md)
        assert Image.open(io.BytesIO(reply.png)).size == (122, 30) and reply.index == 50
        world = ct.world([60, 50, 12])
        at = stub.RenderSlice(
            rendering_pb2.RenderSliceRequest(
                view=rendering_pb2.SliceView(case_id=CASE, plane=rendering_pb2.PLANE_AXIAL, world_mm=list(world))
            ),
            metadata=md,
        )
        assert at.index == 12
        stream = list(
            stub.StreamSalientSlices(
                rendering_pb2.StreamSalientSlicesRequest(
                    view=rendering_pb2.SliceView(case_id=CASE, plane=rendering_pb2.PLANE_AXIAL), count=4
                ),
                metadata=md,
            )
        )
        assert len(stream) == 4 and [s.score for s in stream] == sorted((s.score for s in stream), reverse=True)
        sheet = stub.RenderContactSheet(
            rendering_pb2.RenderContactSheetRequest(case_id=CASE, label_version="v1", tiles=9, tile_px=96), metadata=md
        )
        assert Image.open(io.BytesIO(sheet.png)).size == (288, 288)
        for bad, code in [
            (dict(index=500), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(window_level=40, window_width=0), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(label_version="missing", label_style=rendering_pb2.LABEL_STYLE_FILL), grpc.StatusCode.NOT_FOUND),
            (dict(max_size_px=100_000), grpc.StatusCode.INVALID_ARGUMENT),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                stub.RenderSlice(
                    rendering_pb2.RenderSliceRequest(
                        view=rendering_pb2.SliceView(case_id=CASE, plane=rendering_pb2.PLANE_AXIAL, **bad)
                    ),
                    metadata=md,
                )
            assert err.value.code() == code, bad
        exported = stub.ExportForViewer(
            rendering_pb2.ExportForViewerRequest(case_id=CASE, label_version="v1", organs=[organ_to_proto("liver")]),
            metadata=md,
        )
        keys = sorted(o.key.rsplit("/", 1)[1] for o in exported.objects)
        assert keys == ["AtlasLoop.ctbl", "AtlasLoopHeat.ctbl", "attention_liver.nii.gz", "labels.nii.gz"]
        assert b"5 liver 221 130 101 255" in store.get_bytes(
            next(o.key for o in exported.objects if o.key.endswith("AtlasLoop.ctbl"))
        )
        # the same files streamed to a client that cannot reach the object store
        files: dict[str, bytes] = {}
        for chunk in stub.StreamViewerFiles(
            rendering_pb2.StreamViewerFilesRequest(case_id=CASE, organs=[organ_to_proto("liver")]), metadata=md
        ):
            files[chunk.file_name] = files.get(chunk.file_name, b"") + chunk.data
        assert sorted(files) == ["AtlasLoop.ctbl", "AtlasLoopHeat.ctbl", "attention_liver.nii.gz"]
        exported_heat = next(o.key for o in exported.objects if o.key.endswith("attention_liver.nii.gz"))
        streamed, stored = tmp_path / "streamed.nii.gz", tmp_path / "stored.nii.gz"
        streamed.write_bytes(files["attention_liver.nii.gz"])
        stored.write_bytes(store.get_bytes(exported_heat))
        assert np.array_equal(load_nifti(streamed).array, load_nifti(stored).array)
        assert load_nifti(streamed).array.max() > 0 and load_nifti(streamed).shape == (122, 101, 30)
        assert service.spec.register  # service still serving after refusals
    finally:
        channel.close()
        service.stop(0)


def test_the_display_copy_reads_as_the_ct_and_a_bad_one_is_refused(rendered_case, real_ct_dir, tmp_path):
    """Storage writes display-ready copies beside the CT and each label version; the renderer reads
    them instead of inflating the NIfTI and gets the same voxels on the same grid (a case without
    them falls back to the NIfTI);
    a copy whose frame claims more than its header is refused before anything is decompressed."""
    _core, _ct, _labels, store = rendered_case
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    flipped = np.diag([-1.0, 1.0, -1.0, 1.0])
    flipped[:3, 3] = [ct.shape[0] - 1, 0, ct.shape[2] - 1]
    stored = Volume(np.ascontiguousarray(ct.array[::-1, :, ::-1]), ct.affine @ flipped)  # LAI, not RAS
    store.put_file(layout.ct_key("with-copy"), save_nifti(stored, tmp_path / "ct.nii.gz"))
    store.put_bytes(layout.display_ct_key("with-copy"), display_copy.encode(stored))
    store.put_file(layout.ct_key("without-copy"), tmp_path / "ct.nii.gz")
    labels = stored.with_array((stored.array > 200).astype(np.uint8) * 5)
    store.put_file(layout.label_key("with-copy", "v1"), save_nifti(labels, tmp_path / "l.nii.gz"))
    store.put_bytes(layout.display_label_key("with-copy", "v1"), display_copy.encode(labels))
    store.put_file(layout.label_key("without-copy", "v1"), tmp_path / "l.nii.gz")
    source = VolumeSource(store, 512 * 2**20, "reference")
    fast, slow = source.ct("with-copy"), source.ct("without-copy")
    assert np.array_equal(fast.array, slow.array) and np.allclose(fast.affine, slow.affine)
    fast, slow = source.labels("with-copy", "v1"), source.labels("without-copy", "v1")
    assert fast.array.any() and np.array_equal(fast.array, slow.array) and np.allclose(fast.affine, slow.affine)
    # in slabs, as storage writes a label version's copy: small enough to come whole with the header's GET
    store.put_bytes(layout.display_label_key("with-copy", "v2"), display_copy.encode(labels, bricks=False))
    assert np.array_equal(source.labels("with-copy", "v2").array, slow.array)
    fast = source.ct("with-copy")
    assert np.array_equal(fast.array, source.ct(CASE).array)  # the same world as the unflipped CT

    # pictures drawn from bricks read by ranged GETs (a cold cache each time) equal the NIfTI's
    for plane, index in (("axial", 3), ("coronal", 60), ("sagittal", 70)):
        pictures = []
        for case in ("with-copy", "without-copy"):
            core = RenderingCore(VolumeSource(store, 512 * 2**20, "reference"), store, 2048, 16)
            pictures.append(core.render(View(case, "v1", plane, index, label_style="fill"))[0])
            assert isinstance(core.source.ct_planes(case), BrickedVolume if case == "with-copy" else CompleteVolume)
        assert pictures[0] == pictures[1], plane

    other = display_copy.encode(Volume(np.zeros((200, 200, 200), np.int16), ct.affine))
    header_end = other.index(b"}") + 1
    forged = display_copy.encode(Volume(np.zeros((4, 4, 4), np.int16), ct.affine))
    store.put_bytes(layout.display_ct_key("forged"), forged[: forged.index(b"}") + 1] + other[header_end:])
    with pytest.raises(ImageError, match="frame holds 524,288 bytes, its header says 128"):  # a 64-voxel brick
        VolumeSource(store, 2**20, "reference").ct("forged")
