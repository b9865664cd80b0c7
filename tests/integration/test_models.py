"""The model registry on the real S3: checkpoints imported with ``atlasloop models import`` predict
exactly as the modules that saved them; bad checkpoints are refused before anything is stored;
the predictor produces compact outputs and a native-grid pseudo-label for the real CT."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch

from atlasloop.cli.__main__ import main
from atlasloop.common import layout
from atlasloop.common.errors import AlreadyExists, InvalidInput, NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging.preprocess import PreprocessConfig
from atlasloop.imaging.volume import load_nifti
from atlasloop.models.architectures import build, config
from atlasloop.models.bundles import unpack
from atlasloop.models.checkpoints import state_dict_bytes
from atlasloop.models.ensemble import InferenceConfig, member_probabilities, predict
from atlasloop.models.records import LoadedModel
from atlasloop.models.registry import ModelRegistry

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("architecture", ["unet", "dynunet", "segresnet", "swin_unetr"])
def test_imported_checkpoint_predicts_like_the_module(registry, tmp_path, architecture):
    registry_, _ = registry
    torch.manual_seed(7)
    module = build(config(architecture, "tiny")).eval()
    path = tmp_path / f"{architecture}.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in module.state_dict().items()}}, path)  # DDP-style
    assert (
        main(
            [
                "models",
                "import",
                "--architecture",
                architecture,
                "--size",
                "tiny",
                "--weights",
                str(path),
                "--version",
                "v1",
                "--provenance",
                "trained_by=tests",
            ]
        )
        == 0
    )
    loaded = registry_.load(architecture, "v1")
    assert loaded.manifest.provenance == {"trained_by": "tests", "source_file": path.name}
    image = np.random.default_rng(0).random((70, 66, 64), dtype=np.float32)
    direct = LoadedModel(architecture, "direct", loaded.config, module, loaded.manifest)  # the module itself
    cfg = InferenceConfig(overlap=0.25)
    assert torch.equal(member_probabilities(loaded, image, cfg), member_probabilities(direct, image, cfg))


def test_bad_checkpoints_are_refused_and_nothing_is_stored(registry, tmp_path):
    registry_, store = registry
    unet = build(config("unet", "tiny"))
    with pytest.raises(InvalidInput, match="do not fit dynunet/tiny"):
        registry_.register("dynunet", "tiny", state_dict_bytes(unet))
    with pytest.raises(InvalidInput, match="not a readable PyTorch checkpoint"):
        registry_.register("unet", "tiny", b"PK\x03\x04 definitely not torch")
    buffer = io.BytesIO()
    torch.save({"epoch": 3}, buffer)
    with pytest.raises(InvalidInput, match="no state dict"):
        registry_.register("unet", "tiny", buffer.getvalue())
    assert store.list_keys(layout.MODELS) == []
    registry_.register("unet", "tiny", state_dict_bytes(unet), version="good")
    store.put_bytes(layout.weights_key("unet", "good"), state_dict_bytes(build(config("unet", "tiny"))))  # tampered
    with pytest.raises(InvalidInput, match="SHA-256"):
        registry_.load("unet", "good")


def test_model_sets_and_the_current_pointer(registry):
    registry_, _ = registry
    for architecture in ("unet", "dynunet"):
        registry_.register(architecture, "tiny", state_dict_bytes(build(config(architecture, "tiny"))), version="v1")
    created = registry_.create_set([("unet", "v1"), ("dynunet", "v1")], make_current=True, version="ms-0001")
    assert registry_.current() == "ms-0001" and registry_.model_set("ms-0001") == created
    with pytest.raises(Exception, match="does not exist"):
        registry_.create_set([("unet", "v9")])
    # a set published by training carries its expected-Dice offsets; bad ones leave no set behind
    members = [("unet", "v1"), ("dynunet", "v1")]
    calibrated = registry_.create_set(members, version="ms-0002", expected_dice_offsets={"aorta": 0.14, "liver": -0.01})
    assert (
        registry_.model_set("ms-0002").expected_dice_offsets
        == {"aorta": 0.14, "liver": -0.01}
        == dict(calibrated.expected_dice_offsets)
    )
    assert created.expected_dice_offsets == {} and registry_.current() == "ms-0001"
    for bad in ({"appendix": 0.1}, {"aorta": float("inf")}, {"aorta": 2.0}):
        with pytest.raises(InvalidInput, match="expected-Dice offsets"):
            registry_.create_set(members, version="ms-0003", expected_dice_offsets=bad)
    with pytest.raises(NotFound):
        registry_.model_set("ms-0003")


def test_predictor_on_the_real_ct(registry, real_ct_dir):
    registry_, _ = registry
    members = []
    for seed, architecture in enumerate(("unet", "dynunet", "segresnet")):
        torch.manual_seed(seed)
        registry_.register(architecture, "tiny", state_dict_bytes(build(config(architecture, "tiny"))), version="v1")
        members.append(registry_.load(architecture, "v1"))
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    finished = []
    result = predict(ct, members, InferenceConfig(overlap=0.25, sw_batch_size=4), on_member=finished.append)
    assert [m.architecture for m in finished] == ["unet", "dynunet", "segresnet"]
    assert result.labels.shape == ct.shape and np.allclose(result.labels.affine, ct.affine)
    assert set(np.unique(result.labels.array)) <= set(range(10))
    output = result.output
    assert len(output.members) == 3 and set(output.soft[output.members[0]]) == set(output.pseudo)
    crops = [c for member in output.soft.values() for c in member.values()]
    assert all(c.data.dtype == np.uint8 for c in crops)  # probabilities in [0, 1] as x255 uint8
    assert output.to_bytes()  # serialisable for the object store


def test_a_models_spacing_sets_the_grid_it_predicts_on(registry, real_ct_dir):
    """A 3 mm model predicts on a 3 mm grid, back on the CT's own grid; a set never mixes grids."""
    registry_, _ = registry
    coarse = PreprocessConfig(spacing_mm=3.0)
    for architecture in ("unet", "dynunet"):
        registry_.register(
            architecture,
            "tiny",
            state_dict_bytes(build(config(architecture, "tiny"))),
            version="fast",
            preprocess=coarse,
        )
    registry_.register("unet", "tiny", state_dict_bytes(build(config("unet", "tiny"))), version="fine")
    members = [registry_.load(a, "fast") for a in ("unet", "dynunet")]
    assert members[0].manifest.spacing_mm == 3.0 and members[0].preprocess == coarse
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    result = predict(ct, members, InferenceConfig(overlap=0.25))
    assert np.allclose(np.linalg.norm(result.output.affine[:3, :3], axis=0), 3.0)
    assert result.labels.shape == ct.shape
    with pytest.raises(InvalidInput, match="disagree on their input spacing"):
        registry_.create_set([("unet", "fine"), ("dynunet", "fast")])
    with pytest.raises(InvalidInput, match="disagree on their input spacing"):
        predict(ct, [registry_.load("unet", "fine"), members[1]])
    with pytest.raises(InvalidInput, match=r"spacing 0\.0 mm"):
        registry_.register("segresnet", "tiny", b"", preprocess=PreprocessConfig(spacing_mm=0.0))


def _other_registry(stack, name):
    store = ObjectStore(stack.s3_settings(bucket=name))
    store.check_bucket()
    return ModelRegistry(store), store


def test_a_model_set_moves_to_another_site_in_one_file_and_a_damaged_bundle_changes_nothing(
    stack, unique, registry, tmp_path, monkeypatch, capsys
):
    source, _ = registry
    for architecture in ("unet", "dynunet"):
        source.register(architecture, "tiny", state_dict_bytes(build(config(architecture, "tiny"))), version="v1")
    source.create_set([("unet", "v1"), ("dynunet", "v1")], version="ms-0001")
    assert main(["models", "pack", "ms-0001", "--out", str(tmp_path / "ms-0001.tar")]) == 0
    bundle = tmp_path / "ms-0001.tar"

    # the other site: its own registry (another bucket), reached only through the file
    target, _ = _other_registry(stack, f"site-{unique}")
    monkeypatch.setenv("ATLASLOOP_S3__BUCKET", f"site-{unique}")
    assert main(["models", "unpack", str(bundle), "--current"]) == 0
    assert "2 models added, 0 already here" in capsys.readouterr().out
    assert target.current() == "ms-0001" and target.model_set("ms-0001").members == source.model_set("ms-0001").members
    for architecture in ("unet", "dynunet"):
        assert target.weights(architecture, "v1") == source.weights(architecture, "v1")
        assert target.manifest(architecture, "v1") == source.manifest(architecture, "v1")
    assert [m.architecture for m in target.load_set("ms-0001")] == ["unet", "dynunet"]  # verified and loadable
    assert unpack(target, bundle).kept == ["unet@v1", "dynunet@v1"]  # again: nothing new

    # damaged, padded or conflicting bundles are refused whole
    with tarfile.open(bundle) as original:
        members = [(m, original.extractfile(m).read()) for m in original.getmembers()]
    for name, change in (("damaged.tar", "flip"), ("padded.tar", "add")):
        with tarfile.open(tmp_path / name, "w") as archive:
            for member, data in members:
                if change == "flip" and member.name.endswith("weights.pt"):
                    data = data[:600] + bytes([data[600] ^ 0xFF]) + data[601:]  # one bit of one weight file
                archive.addfile(member, io.BytesIO(data))
            if change == "add":
                evil = tarfile.TarInfo("../../etc/cron.d/x")
                evil.size = 4
                archive.addfile(evil, io.BytesIO(b"boom"))
    fresh, fresh_store = _other_registry(stack, f"fresh-{unique}")
    with pytest.raises(InvalidInput, match="SHA-256"):
        unpack(fresh, tmp_path / "damaged.tar")
    with pytest.raises(InvalidInput, match=r"not in bundle\.json"):
        unpack(fresh, tmp_path / "padded.tar")
    with pytest.raises(InvalidInput, match="not a model bundle"):
        unpack(fresh, _write(tmp_path / "junk.tar", b"junk" * 100))
    fresh.register("unet", "tiny", state_dict_bytes(build(config("unet", "tiny"))), version="v1")  # other weights
    with pytest.raises(AlreadyExists, match="other weights"):
        unpack(fresh, bundle)
    assert [k for k in fresh_store.list_keys("") if "dynunet" in k or "model-sets" in k] == []


def _write(path, data):
    path.write_bytes(data)
    return path
