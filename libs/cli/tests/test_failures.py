"""Every command's failure is one line (``atlasloop <command>: <what went wrong>``) on stderr and a
non-zero exit code; the traceback only with --debug."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.cli.__main__ import main
from atlasloop.common.service_map import SERVICES
from atlasloop.imaging.volume import Volume, save_nifti

LEASE = "8e0f3a52-6a55-4c8f-9c3e-1f2d3b4c5d6e"
TOKEN = ["--token", "a-token"]


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """Every service at an address nobody listens on, and a label map on disk."""
    for name in SERVICES:
        monkeypatch.setenv(f"ATLASLOOP_{name.upper()}_TARGET", "127.0.0.1:1")
    monkeypatch.setenv("ATLASLOOP_S3__ENDPOINT", "127.0.0.1:1")
    monkeypatch.chdir(tmp_path)
    save_nifti(Volume(np.zeros((4, 4, 4), np.uint8), np.eye(4)), tmp_path / "labels.nii.gz")
    (tmp_path / "cases").mkdir()
    save_nifti(Volume(np.zeros((4, 4, 5), np.int16), np.eye(4)), tmp_path / "cases" / "one.nii.gz")
    return tmp_path


COMMANDS = [
    ["cases", *TOKEN],
    ["queue", *TOKEN],
    ["queue", "--round", "1", *TOKEN],
    ["next", *TOKEN],
    ["stats", *TOKEN],
    ["pull", LEASE, "--out", "pulled", *TOKEN],
    ["pull", "case-1", "--out", "pulled", *TOKEN],
    ["slices", "case-1", *TOKEN],
    ["slices", "case-1", "--size", "9", *TOKEN],
    ["revise", LEASE, "labels.nii.gz", "--minutes", "3", *TOKEN],
    ["revise", LEASE, "labels.nii.gz", *TOKEN],
    ["revise", LEASE, "missing.nii.gz", "--minutes", "3", *TOKEN],
    ["review", "revision-1", "approve", *TOKEN],
    ["train", *TOKEN],
    ["watch", "run-1", *TOKEN],
    ["runs", *TOKEN],
    ["import", "cases", *TOKEN],
    ["cases"],  # no token and no .run/tokens.json
    ["convert", "missing.nii.gz", "out.nii.gz"],
    ["inspect", "missing.nii.gz"],
    ["metrics", "labels.nii.gz", "cases/one.nii.gz"],
    ["score", "no-such-folder"],
    ["synth", "--cases", "1", "--out", "cohort", "--sites", "Z"],
    ["models", "set", "unet"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_a_failure_is_one_line_and_a_non_zero_exit(nowhere, capsys, argv):
    code = _run(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1, err
    assert err[0].startswith(f"atlasloop {argv[0]}") and "Traceback" not in err[0]


def test_an_unreachable_service_says_how_to_start_the_stack(nowhere, capsys):
    assert _run(["runs", *TOKEN]) == 6
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err and "make up" in err


def test_debug_shows_the_traceback(nowhere):
    import grpc

    with pytest.raises(grpc.RpcError):
        main(["--debug", "runs", *TOKEN])


def test_status_lists_every_service_as_unreachable(nowhere, capsys):
    assert _run(["status", *TOKEN]) == 6
    out = capsys.readouterr().out
    assert out.count("UNREACHABLE") == len(SERVICES) and "127.0.0.1:1" in out


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse and our own refusals end with SystemExit(message)
        if isinstance(exc.code, str):
            import sys

            print(exc.code, file=sys.stderr)
            return 1
        return int(exc.code or 0)
