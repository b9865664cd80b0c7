"""``atlasloop import DIR``: every case in a folder into the storage service, in parallel.

A case is a NIfTI file, a zip of DICOM slices, an AbdomenAtlas case folder (``ct.nii.gz`` with
``combined_labels.nii.gz`` or ``segmentations/``) or a folder of DICOM slices (one series). Folders
are zipped on the way. Each case is reported as imported, skipped as a duplicate, or refused with
the service's reason; anything else in the folder is listed as not a case.

``atlasloop import --dicomweb URL --study UID [--series UID]`` imports from a PACS instead: each
series of the study (QIDO-RS) is retrieved (WADO-RS) into a folder named by its series UID, which
becomes the case id, and imported as above. ``ATLASLOOP_DICOMWEB_USER`` and
``ATLASLOOP_DICOMWEB_PASSWORD`` give the PACS's basic authentication, ``ATLASLOOP_DICOMWEB_CA`` a CA
file for HTTPS; the password is never a command-line argument (it would show in ``ps``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
from tqdm import tqdm

from atlasloop.cli.client import add_connection_arguments, connect
from atlasloop.common.dicomweb import DicomWebClient, check_uid
from atlasloop.common.errors import NotReady
from atlasloop.common.transfer import upload_file
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

NIFTI = (".nii", ".nii.gz")


@dataclass(frozen=True)
class Candidate:
    name: str
    path: Path
    format: storage_pb2.CaseFormat


@dataclass
class Outcome:
    name: str
    status: str  # imported | duplicate | refused | not a case
    case_id: str = ""
    reason: str = ""


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def discover(folder: Path) -> tuple[list[Candidate], list[Outcome]]:
    cases, others = [], []
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if entry.is_file() and name.lower().endswith(NIFTI):
            cases.append(Candidate(name.split(".nii")[0], entry, storage_pb2.CASE_FORMAT_NIFTI))
        elif entry.is_file() and name.lower().endswith(".zip"):
            with zipfile.ZipFile(entry) as archive:
                atlas = any(n.endswith("ct.nii.gz") for n in archive.namelist())
            cases.append(
                Candidate(
                    entry.stem,
                    entry,
                    storage_pb2.CASE_FORMAT_ABDOMENATLAS_ZIP if atlas else storage_pb2.CASE_FORMAT_DICOM_ZIP,
                )
            )
        elif entry.is_dir() and (entry / "ct.nii.gz").exists():
            cases.append(Candidate(name, entry, storage_pb2.CASE_FORMAT_ABDOMENATLAS_ZIP))
        elif entry.is_dir() and any(_is_dicom(p) for p in list(entry.rglob("*"))[:20] if p.is_file()):
            cases.append(Candidate(name, entry, storage_pb2.CASE_FORMAT_DICOM_ZIP))
        else:
            others.append(Outcome(name, "not a case", reason="not NIfTI, DICOM or an AbdomenAtlas case"))
    return cases, others


def _zip_folder(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return dest


def import_one(
    stub: storage_pb2_grpc.StorageServiceStub, metadata, candidate: Candidate, keep_names: bool, allow_duplicate: bool
) -> Outcome:
    try:
        with tempfile.TemporaryDirectory(prefix="atlasloop-bulk-") as tmp:
            path = candidate.path
            if path.is_dir():
                path = _zip_folder(path, Path(tmp) / f"{candidate.name}.zip")
            upload_id = upload_file(stub, path, metadata)
            reply = stub.ImportCase(
                storage_pb2.ImportCaseRequest(
                    upload_id=upload_id,
                    format=candidate.format,
                    case_id=candidate.name if keep_names else "",
                    allow_duplicate=allow_duplicate,
                    source=f"atlasloop import: {candidate.path.name}",
                ),
                metadata=metadata,
                timeout=600,
            )
        return Outcome(candidate.name, "duplicate" if reply.duplicate else "imported", reply.case_id)
    except grpc.RpcError as exc:
        return Outcome(candidate.name, "refused", reason=f"{exc.code().name}: {exc.details()}")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "import", help="import every case in a folder, or a study from a PACS (--dicomweb), into the storage service"
    )
    parser.add_argument("folder", type=Path, nargs="?", help="a folder of cases (or --dicomweb)")
    parser.add_argument("--dicomweb", metavar="URL", help="a PACS's DICOMweb root, to import --study from")
    parser.add_argument("--study", metavar="UID", help="the StudyInstanceUID to import (with --dicomweb)")
    parser.add_argument("--series", metavar="UID", action="append", help="only this series (repeatable)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--generate-ids", action="store_true", help="do not use file and folder names as case ids")
    parser.add_argument("--allow-duplicates", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_connection_arguments(parser, "storage")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.dicomweb:
        if args.folder is not None or not args.study:
            raise SystemExit("atlasloop import: --dicomweb takes --study UID and no folder")
        with tempfile.TemporaryDirectory(prefix="atlasloop-dicomweb-") as tmp:
            args.folder = fetch_study(pacs_client(args.dicomweb), args.study, args.series, Path(tmp))
            return _import_folder(args)
    if args.folder is None or not args.folder.is_dir():
        raise SystemExit(f"atlasloop import: {args.folder} is not a folder")
    return _import_folder(args)


def pacs_client(url: str) -> DicomWebClient:
    """The PACS at ``url``, with the credentials and CA of the environment."""
    return DicomWebClient(
        url,
        os.environ.get("ATLASLOOP_DICOMWEB_USER", ""),
        os.environ.get("ATLASLOOP_DICOMWEB_PASSWORD", ""),
        ca_file=os.environ.get("ATLASLOOP_DICOMWEB_CA") or None,
    )


def fetch_study(pacs: DicomWebClient, study: str, series: list[str] | None, into: Path) -> Path:
    """The study's series (or the ones asked for), each in a folder named by its series UID."""
    study = check_uid(study, "study UID")
    wanted = [check_uid(s, "series UID") for s in series] if series else pacs.series_of(study)
    for uid in wanted:
        pacs.retrieve_series(study, uid, into / uid)
    return into


def _import_folder(args: argparse.Namespace) -> int:
    outcomes = import_folder(args, args.folder)
    if args.json:
        print(json.dumps([asdict(o) for o in outcomes], indent=2))
    else:
        for o in outcomes:
            detail = o.case_id if o.status in ("imported", "duplicate") else o.reason
            print(f"{o.status:<11} {o.name:<40} {detail}")
        counts = {s: sum(o.status == s for o in outcomes) for s in ("imported", "duplicate", "refused", "not a case")}
        print(", ".join(f"{n} {s}" for s, n in counts.items()))
    return 1 if any(o.status == "refused" for o in outcomes) else 0


def import_folder(args: argparse.Namespace, folder: Path) -> list[Outcome]:
    """Every case in ``folder`` into storage (``args``: the connection, workers, id and duplicate
    choices); one outcome per entry, by name."""
    cases, outcomes = discover(folder)
    channel, metadata = connect(args, "admin")
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
    except grpc.FutureTimeoutError:
        raise NotReady(
            f"the storage service at {args.target} does not answer (is the stack running? 'make up' starts it)"
        ) from None
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    with (
        ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool,
        tqdm(total=len(cases), unit="case", desc="import", disable=True if args.json else None) as bar,
    ):
        futures = [
            pool.submit(import_one, stub, metadata, c, not args.generate_ids, args.allow_duplicates) for c in cases
        ]
        for future in as_completed(futures):
            outcomes.append(future.result())
            bar.update(1)
    channel.close()
    return sorted(outcomes, key=lambda o: o.name)
