"""``atlasloop import DIR`` against the real storage service: imported, duplicate, refused, not a case."""

from __future__ import annotations

import json
import shutil

import pytest

from atlasloop.cli.__main__ import main
from atlasloop.imaging.dicom_write import write_series
from atlasloop.imaging.synth.cohort import generate_cohort
from atlasloop.imaging.volume import load_nifti
from atlasloop.storage.app import build
from atlasloop.storage.settings import StorageSettings

from .conftest import start_in_process
from .test_storage_service import TOKENS

pytestmark = pytest.mark.integration


def test_bulk_import_reports_every_entry(stack, unique, real_ct_dir, tmp_path, capsys):
    settings = StorageSettings(
        port=0,
        health_poll_s=60,
        s3=stack.s3_settings(bucket=f"bulk-{unique}"),
        kafka=stack.kafka_settings().model_copy(update={"topic_prefix": f"b{unique}."}),
        auth={"dev_tokens": TOKENS},
    )
    service, channel = start_in_process(build(settings), settings)
    try:
        folder = tmp_path / "incoming"
        generate_cohort(folder, cases=2, seed=4, sites=["A", "C"], spacing_mm=4.0)  # two AbdomenAtlas folders
        (folder / "cohort.json").rename(tmp_path / "cohort.json")
        shutil.copy(real_ct_dir / "example_ct_sm.nii.gz", folder / "realct.nii.gz")
        write_series(load_nifti(real_ct_dir / "example_ct_sm.nii.gz"), folder / "realct_dicom")  # same scan
        broken = (real_ct_dir / "example_ct.nii.gz").read_bytes()
        (folder / "broken.nii.gz").write_bytes(broken[: len(broken) // 2])
        (folder / "notes.txt").write_text("not a scan")
        code = main(
            [
                "import",
                str(folder),
                "--target",
                f"127.0.0.1:{service.port}",
                "--token",
                "tok-admin",
                "--workers",
                "1",
                "--json",
            ]
        )
        report = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    finally:
        channel.close()
        service.stop(0)
    assert code == 1  # something was refused
    assert {n: r["status"] for n, r in report.items()} == {
        "case_00000": "imported",
        "case_00001": "imported",
        "realct": "imported",
        "realct_dicom": "duplicate",
        "broken": "refused",
        "notes.txt": "not a case",
    }
    assert report["realct_dicom"]["case_id"] == "realct"
    assert "broken.nii.gz" in report["broken"]["reason"]
