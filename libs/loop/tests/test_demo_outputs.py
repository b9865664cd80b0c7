"""A second ``make demo`` into the same folder replaces the first run's outputs."""

from __future__ import annotations

from atlasloop.loop.demo import OUTPUT_FOLDERS, RELEASES, clear_outputs


def test_a_rerun_clears_the_demos_own_folders_and_nothing_else(tmp_path):
    out = tmp_path / "reports" / "demo"
    clear_outputs(out)  # a first run: the folder is made
    assert out.is_dir() and not any(out.iterdir())
    for own in OUTPUT_FOLDERS:
        (out / own / "x").mkdir(parents=True)
        (out / own / "x" / "file").write_text("an earlier run's")
    (out / "notes.txt").write_text("the user's")
    (out / "results.json").write_text("{}")

    clear_outputs(out)

    assert not any((out / own).exists() for own in OUTPUT_FOLDERS)
    assert (out / "notes.txt").read_text() == "the user's" and (out / "results.json").exists()
    assert RELEASES in OUTPUT_FOLDERS  # the folder a release refuses to overwrite
