"""Label schemas: the built-in AbdomenAtlas schemas, schema files and every refusal, and a process
configured with the 25-class schema reading it everywhere the nine organs were assumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.schema import (
    BUILTIN,
    MAX_SCHEMA_FILE_BYTES,
    SCHEMA_ENV,
    configured_schema,
    load_schema,
    schema_from_dict,
)

# The released datasets' ids (AbdomenAtlas 1.0 and 1.1 label files).
ATLAS_1_0 = {
    1: "aorta",
    2: "gall_bladder",
    3: "kidney_left",
    4: "kidney_right",
    5: "liver",
    6: "pancreas",
    7: "postcava",
    8: "spleen",
    9: "stomach",
}
ATLAS_1_1_MORE = {
    10: "adrenal_gland_left",
    11: "adrenal_gland_right",
    12: "bladder",
    13: "celiac_trunk",
    14: "colon",
    15: "duodenum",
    16: "esophagus",
    17: "femur_left",
    18: "femur_right",
    19: "hepatic_vessel",
    20: "intestine",
    21: "lung_left",
    22: "lung_right",
    23: "portal_vein_and_splenic_vein",
    24: "prostate",
    25: "rectum",
}


def _own() -> dict:
    return {
        "name": "lab-kidneys-v2",
        "structures": [
            {"id": 1, "name": "kidney_left", "color": [185, 102, 83], "volume_ml": [60, 350]},
            {"id": 2, "name": "kidney_right", "color": [212, 126, 151], "volume_ml": [60, 350]},
            {"id": 200, "name": "renal_tumour", "color": [255, 0, 0], "optional": True, "aliases": ["tumor"]},
        ],
        "laterality": [["kidney_left", "kidney_right"]],
        "must_not_touch": [["kidney_left", "kidney_right"]],
    }


def test_builtin_schemas_carry_the_released_ids():
    one, eleven = BUILTIN["abdomenatlas-1.0"], BUILTIN["abdomenatlas-1.1"]
    assert one.names == ATLAS_1_0 and one.num_classes == 10
    assert eleven.names == {**ATLAS_1_0, **ATLAS_1_1_MORE} and eleven.num_classes == 26
    assert one.vessels == {"aorta", "postcava"} and "portal_vein_and_splenic_vein" in eleven.vessels
    assert set(one.volume_ranges_ml) == set(ATLAS_1_0.values())  # every 1.0 organ is checked
    assert eleven.volume_ranges_ml == one.volume_ranges_ml  # the new ones carry no range
    assert ("lung_left", "lung_right") in eleven.laterality and one.laterality == (
        ("kidney_left", "kidney_right"),
        ("spleen", "liver"),
    )
    assert one.aliases["ivc"] == "postcava" and eleven.aliases["urinary_bladder"] == "bladder"
    assert one.fingerprint != eleven.fingerprint


def test_a_schema_file_round_trips(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(_own()))
    schema = load_schema(str(path))
    assert schema.names == {1: "kidney_left", 2: "kidney_right", 200: "renal_tumour"}
    assert schema.num_classes == 201  # ids need not be consecutive; the network predicts up to the largest
    assert schema.optional == {"renal_tumour"} and schema.aliases == {"tumor": "renal_tumour"}
    assert schema.volume_ranges_ml == {"kidney_left": (60.0, 350.0), "kidney_right": (60.0, 350.0)}
    assert schema_from_dict(schema.to_dict()) == schema
    assert schema_from_dict(json.loads(schema.canonical_json())).fingerprint == schema.fingerprint
    for builtin in BUILTIN.values():
        assert schema_from_dict(builtin.to_dict()) == builtin


def _with(change) -> dict:
    raw = _own()
    change(raw)
    return raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["structures"][1].update(id=1), "id 1 is used by both kidney_left and kidney_right"),
        (lambda r: r["structures"][1].update(name="kidney_left"), "named twice"),
        (lambda r: r["structures"][0].update(id=0), "0 is background"),
        (lambda r: r["structures"][0].update(id=256), "1..255"),
        (lambda r: r["structures"][0].update(id=True), "must be an integer"),
        (lambda r: r["structures"][0].update(name="Kidney Left"), "lower-case"),
        (lambda r: r["structures"][0].update(color=[0, 0, 300]), "color"),
        (lambda r: r["structures"][0].update(volume_ml=[350, 60]), "low < high"),
        (lambda r: r["structures"][0].update(volume_ml=[0, float("nan")]), "volume_ml"),
        (lambda r: r["structures"][0].update(optional="yes"), "optional must be true or false"),
        (lambda r: r["structures"][0].update(shape="ellipsoid"), "unknown keys"),
        (lambda r: r["structures"][0].update(aliases=["kidney_right"]), "another structure's name"),
        (lambda r: r["structures"][1].update(aliases=["tumor"]), "alias is given to two"),
        (lambda r: r.update(laterality=[["kidney_left", "kidney_middle"]]), "kidney_middle"),
        (lambda r: r.update(must_not_touch=[["kidney_left", "kidney_left"]]), "with itself"),
        (lambda r: r.update(structures=[]), "non-empty"),
        (lambda r: r.update(name="../etc"), "name"),
        (lambda r: r.update(version=2), "unknown keys"),
    ],
)
def test_a_bad_schema_is_refused_with_what_is_wrong(change, message):
    with pytest.raises(InvalidInput, match=message):
        schema_from_dict(_with(change), "schema.json")


def test_schema_files_are_bounded_and_must_exist(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_SCHEMA_FILE_BYTES + 1))
    with pytest.raises(InvalidInput, match="at most"):
        load_schema(str(big))
    broken = tmp_path / "broken.json"
    broken.write_text("{name: ")
    with pytest.raises(InvalidInput, match="not JSON"):
        load_schema(str(broken))
    with pytest.raises(InvalidInput, match="neither a built-in schema"):
        load_schema("abdomenatlas-9")


def test_the_configured_schema_comes_from_the_environment(tmp_path):
    path = tmp_path / "own.json"
    path.write_text(json.dumps(_own()))
    assert configured_schema({}).name == "abdomenatlas-1.0"
    assert configured_schema({SCHEMA_ENV: "abdomenatlas-1.1"}).num_classes == 26
    assert configured_schema({SCHEMA_ENV: str(path)}).name == "lab-kidneys-v2"


def test_a_25_class_process_reads_the_schema_everywhere():
    """In a process configured with AbdomenAtlas 1.1: ids 10-25 are valid labels and proto organ
    values, plausibility and the taxonomy know the new pairs, the networks predict 26 channels, and
    the synthetic phantom labels the surrounding structures it draws."""
    code = textwrap.dedent(
        """
        import numpy as np
        from atlasloop.common.domain import organ_from_proto, organ_to_proto
        from atlasloop.common.v1 import common_pb2
        from atlasloop.imaging import labels
        from atlasloop.imaging.errors import ImageError
        from atlasloop.imaging.synth.phantom import render
        from atlasloop.imaging.synth.sites import SITES
        from atlasloop.method import plausibility
        from atlasloop.method.error_taxonomy import diff_labels
        from atlasloop.models.architectures import build, config

        assert labels.NUM_CLASSES == 26 and labels.SCHEMA.name == "abdomenatlas-1.1"
        assert labels.validate_label_map(np.array([0, 9, 25])).max() == 25
        try:
            labels.validate_label_map(np.array([26]))
            raise SystemExit("26 accepted")
        except ImageError as exc:
            assert "outside the schema abdomenatlas-1.1" in str(exc)
        wire = common_pb2.OrganErrorTag(organ=organ_to_proto("lung_left")).SerializeToString()
        tag = common_pb2.OrganErrorTag.FromString(wire)
        assert tag.organ == 21 and organ_from_proto(tag.organ) == "lung_left"
        assert ("lung_left", "lung_right") in plausibility.LATERAL
        ai = np.zeros((20, 8, 8), np.uint8); ai[:8] = 21; ai[12:] = 22
        revised = np.zeros_like(ai); revised[:8] = 22; revised[12:] = 21
        swapped = {d.organ: d.suggested for d in diff_labels(ai, revised, 1.0)}
        assert swapped["lung_left"] == swapped["lung_right"] == ["laterality_swap"], swapped
        import torch
        net = build(config("unet", "tiny"))
        with torch.no_grad():
            out = net(torch.zeros(1, 1, 32, 32, 32))
        assert out.shape[1] == 26, out.shape
        _, seg = render(np.random.default_rng(3), SITES["A"], 3.0, scale=0.5)
        present = {labels.ORGANS[int(v)] for v in np.unique(seg.array) if v}
        assert {"lung_left", "lung_right", "intestine", "duodenum", "liver"} <= present, present
        print("ok", sorted(present))
        """
    )
    env = {**os.environ, SCHEMA_ENV: "abdomenatlas-1.1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-3000:]


def test_the_nine_organ_phantom_is_unchanged_by_the_larger_schema():
    """The phantom labels surrounding tissue only when the schema holds it: under 1.0 its label
    map holds the nine organs and nothing else."""
    import numpy as np

    from atlasloop.imaging import labels
    from atlasloop.imaging.synth.phantom import render
    from atlasloop.imaging.synth.sites import SITES

    assert labels.SCHEMA.name == "abdomenatlas-1.0"
    _, seg = render(np.random.default_rng(3), SITES["A"], 3.0, scale=0.5)
    assert set(np.unique(seg.array)) <= {0, *ATLAS_1_0}
