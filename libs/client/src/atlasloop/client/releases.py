"""Write a dataset release to a folder: the frozen choice tracking made, the files from storage.

Tracking decides what a release holds (:rpc:`CreateRelease`: one label version per case, best by
provenance) and keeps it immutable; this module only materialises it, in any of the layouts of
:mod:`atlasloop.imaging.dataset_formats`, beside

- ``manifest.json``: the release (name, previous, who, when), the format, the class map, and per
  case its label version, source, model set, revision and round, and the SHA-256 of every file
  written for it;
- ``CHANGELOG.md`` and ``changelog.json``: what changed since the previous release, case by case,
  with the source before and after and the error tags the annotators confirmed.

The folder is written beside its destination and renamed into place at the end, so an interrupted
or failed write leaves no half release; an existing destination is never written into. Writing
the same release again (another format, another machine) gives the same label maps: the release
names label versions, which never change.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from atlasloop.client.client import Client
from atlasloop.common.domain import ErrorTag, organ_from_proto
from atlasloop.common.objectstore import sha256_file
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.dataset_formats import FORMATS, verify, write_case, write_index
from atlasloop.imaging.dicom_seg import SegProvenance
from atlasloop.storage.v1 import storage_pb2
from atlasloop.tracking.v1 import tracking_pb2

SOURCES = {
    common_pb2.LABEL_SOURCE_ORIGINAL: "original",
    common_pb2.LABEL_SOURCE_AI: "ai",
    common_pb2.LABEL_SOURCE_HUMAN: "human",
}
CHANGES = {
    tracking_pb2.RELEASE_CHANGE_KIND_ADDED: "added",
    tracking_pb2.RELEASE_CHANGE_KIND_CHANGED: "changed",
    tracking_pb2.RELEASE_CHANGE_KIND_REMOVED: "removed",
}


@dataclass(frozen=True)
class Written:
    folder: Path
    release: tracking_pb2.Release
    created: bool  # False when the release existed and was only written out
    unlabelled: list[str]


def freeze(client: Client, name: str, project_id: str = "", description: str = "") -> tuple[bool, list[str]]:
    """Create release ``name`` unless it exists; (created, cases left out for want of a label)."""
    try:
        reply = client.tracking.CreateRelease(
            tracking_pb2.CreateReleaseRequest(name=name, project_id=project_id, description=description),
            metadata=client.auth("admin"),
            timeout=client.timeout_s,
        )
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
            return False, []
        raise
    return True, list(reply.unlabelled)


def write_release(
    client: Client, name: str, out: Path, fmt: str, project_id: str = "", description: str = "", check: bool = True
) -> Written:
    """Freeze release ``name`` (or take the existing one) and write it to ``out`` in ``fmt``;
    ``check`` reads it back (:func:`~atlasloop.imaging.dataset_formats.verify`) before it is put
    in place."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown release format {fmt!r} (one of {', '.join(FORMATS)})")
    out = out.absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty: a release is written into a new folder")
    created, unlabelled = freeze(client, name, project_id, description)
    reply = client.tracking.GetRelease(
        tracking_pb2.GetReleaseRequest(name=name), metadata=client.auth("admin"), timeout=client.timeout_s
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        _write(client, reply, partial, fmt)
        problems = verify(partial) if check else []
        if problems:
            raise ValueError(f"release {name} did not read back as {fmt}: " + "; ".join(problems[:5]))
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Written(out, reply.release, created, unlabelled)


def _write(client: Client, reply: tracking_pb2.GetReleaseResponse, folder: Path, fmt: str) -> None:
    classes = dict(reply.release.classes)
    entries = []
    with tempfile.TemporaryDirectory(prefix="atlasloop-release-") as tmp:
        for case in reply.cases:
            work = Path(tmp) / case.case_id
            info = client.case_info(case.case_id)
            ct = labels = work / "unused"
            seg, provenance = None, None
            if fmt == "dicom-seg" and info.HasField("dicom"):  # the SEG of its own series, from storage
                seg = client.export_dicom_seg(case.case_id, work / "seg.dcm", case.label_version)
            else:
                ct = client.download(case.case_id, work / "ct.nii.gz", role="admin")
                labels = client.download(case.case_id, work / "labels.nii.gz", case.label_version, role="admin")
                if fmt == "dicom-seg":
                    provenance = _provenance(client, case)
            files = write_case(fmt, folder, case.case_id, ct, labels, classes, provenance, seg)
            entries.append(_entry(case, info, files, folder))
            shutil.rmtree(work)
    index = write_index(
        fmt, folder, [c.case_id for c in reply.cases], classes, reply.release.name, reply.release.description
    )
    changes = [_change(c) for c in reply.changes]
    manifest = {
        "release": _release(reply.release),
        "format": fmt,
        "classes": {str(k): v for k, v in sorted(classes.items())},
        "cases": entries,
        "files": {str(p.relative_to(folder)): sha256_file(p) for p in index},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (folder / "changelog.json").write_text(
        json.dumps({"release": reply.release.name, "previous": reply.release.previous, "changes": changes}, indent=2)
        + "\n"
    )
    (folder / "CHANGELOG.md").write_text(_changelog_text(reply.release, changes))


def _provenance(client: Client, case: tracking_pb2.ReleaseCase) -> SegProvenance:
    versions = {v.label_version: v for v in client.label_versions(case.case_id, role="admin")}
    version = versions[case.label_version]
    automatic = case.source == common_pb2.LABEL_SOURCE_AI
    return SegProvenance(
        case.case_id,
        case.label_version,
        automatic=automatic,
        author=case.model_set if automatic else version.author,
        created_at=version.created_at.ToDatetime().replace(tzinfo=None),
    )


def _entry(
    case: tracking_pb2.ReleaseCase, info: storage_pb2.CaseInfo, files: list[Path], folder: Path
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "case_id": case.case_id,
        "label_version": case.label_version,
        "source": SOURCES[case.source],
        "model_set": case.model_set,
        "revision_id": case.revision_id,
        "round": case.round,
        "files": {str(p.relative_to(folder)): sha256_file(p) for p in files},
    }
    if info.HasField("dicom"):
        entry["series_instance_uid"] = info.dicom.series_instance_uid
    return entry


def _release(release: tracking_pb2.Release) -> dict[str, Any]:
    return {
        "name": release.name,
        "project_id": release.project_id,
        "description": release.description,
        "previous": release.previous,
        "created_by": release.created_by,
        "created_at": release.created_at.ToDatetime().isoformat() + "Z",
        "cases": release.case_count,
    }


def _change(change: tracking_pb2.ReleaseChange) -> dict[str, Any]:
    return {
        "case_id": change.case_id,
        "change": CHANGES[change.kind],
        "from": {"label_version": change.from_label_version, "source": SOURCES.get(change.from_source, "")},
        "to": {"label_version": change.to_label_version, "source": SOURCES.get(change.to_source, "")},
        "error_tags": [
            {"organ": organ_from_proto(t.organ), "tag": str(ErrorTag.from_proto(t.tag))} for t in change.tags
        ],
    }


def _changelog_text(release: tracking_pb2.Release, changes: list[dict[str, Any]]) -> str:
    when = datetime.fromisoformat(release.created_at.ToDatetime().isoformat()).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Release {release.name}", "", f"{release.case_count} cases, created {when} by {release.created_by}."]
    if release.description:
        lines += ["", release.description]
    if not release.previous:
        lines += ["", "The first release: every case is new."]
    else:
        counts = {kind: sum(1 for c in changes if c["change"] == kind) for kind in ("added", "changed", "removed")}
        lines += ["", f"Since {release.previous}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + "."]
        lines += ["", "| case | change | from | to | error tags |", "|---|---|---|---|---|"]
        for c in changes:
            tags = ", ".join(f"{t['organ']}: {t['tag']}" for t in c["error_tags"]) or "-"
            before = f"{c['from']['source']} {c['from']['label_version']}".strip() or "-"
            after = f"{c['to']['source']} {c['to']['label_version']}".strip() or "-"
            lines.append(f"| {c['case_id']} | {c['change']} | {before} | {after} | {tags} |")
    return "\n".join(lines) + "\n"
