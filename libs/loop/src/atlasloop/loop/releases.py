"""The demo's dataset releases: one frozen before the first round's revisions and one after them,
each written in every format and read back, and the second's changelog compared with the cases
the round revised (``results.json`` ``releases``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from atlasloop.client import Client
from atlasloop.client.releases import write_release
from atlasloop.imaging.dataset_formats import FORMATS, verify


def release(client: Client, name: str, out: Path, description: str) -> dict[str, Any]:
    """Freeze release ``name`` and write it in every format under ``out``; what each read back."""
    began = time.monotonic()
    formats: dict[str, Any] = {}
    for fmt in FORMATS:
        written = write_release(client, name, out / f"{name}-{fmt}", fmt, description=description)
        formats[fmt] = {"folder": str(written.folder), "problems": verify(written.folder)}
    changes = json.loads((written.folder / "changelog.json").read_text())["changes"]
    manifest = json.loads((written.folder / "manifest.json").read_text())
    sources: dict[str, int] = {}
    for case in manifest["cases"]:
        sources[case["source"]] = sources.get(case["source"], 0) + 1
    return {
        "name": name,
        "previous": written.release.previous,
        "cases": written.release.case_count,
        "sources": sources,
        "formats": formats,
        "changes": changes,
        "seconds": time.monotonic() - began,
    }


def check_changelog(record: dict[str, Any], revised: list[str]) -> dict[str, Any]:
    """Whether the release's changelog names exactly the cases revised since the previous one."""
    changed = sorted(c["case_id"] for c in record["changes"])
    record["revised_since_previous"] = sorted(revised)
    record["changelog_lists_exactly_the_revised_cases"] = changed == sorted(revised) and all(
        c["change"] == "changed" and c["to"]["source"] == "human" for c in record["changes"]
    )
    return record
