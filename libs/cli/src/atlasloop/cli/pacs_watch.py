"""``atlasloop watch-pacs URL --query KEY=VALUE ... [--interval S] [--state FILE] [--once]``: import
the new studies of a PACS that match a QIDO-RS query, as they arrive.

Each poll asks the PACS (QIDO-RS) for the studies matching the query (DICOM keywords or tags with
the PACS's matching: ``ModalitiesInStudy=CT``, ``StudyDate=20261201-``, ``StudyDescription=ABD*``),
retrieves each study not seen before (WADO-RS) and imports its series like ``atlasloop import
--dicomweb``. What was done with each study is written to the state file (atomically, after the
study), so a restarted watcher neither imports a study twice nor skips one it had not finished; a
study whose import was refused is recorded with the reason and not retried (re-send it with
``atlasloop import --dicomweb``). A PACS or storage service that does not answer is waited for: the
study stays new and the next poll tries again. Storage also refuses duplicates by content, so a
lost state file costs time, not data.

The PACS's credentials come from ``ATLASLOOP_DICOMWEB_USER``, ``ATLASLOOP_DICOMWEB_PASSWORD`` and
``ATLASLOOP_DICOMWEB_CA``, as for ``atlasloop import --dicomweb``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from atlasloop.cli.bulk_import import fetch_study, import_folder, pacs_client
from atlasloop.cli.client import add_connection_arguments
from atlasloop.common.errors import NotReady


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("watch-pacs", help="import the new studies of a PACS that match a query, as they come")
    parser.add_argument("dicomweb", metavar="URL", help="the PACS's DICOMweb root")
    parser.add_argument(
        "--query",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="QIDO-RS match (repeatable), e.g. ModalitiesInStudy=CT",
    )
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between polls (default 60)")
    parser.add_argument("--state", type=Path, default=Path("pacs-watch.json"), help="what was imported (JSON)")
    parser.add_argument("--once", action="store_true", help="poll once and exit")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print each poll's outcomes as JSON")
    add_connection_arguments(parser, "storage")
    parser.set_defaults(run=run, generate_ids=False, allow_duplicates=False)


def _query(items: list[str]) -> dict[str, str]:
    query = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"atlasloop watch-pacs: --query {item!r} is not KEY=VALUE")
        query[key] = value
    return query


def load_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"studies": {}}
    state = json.loads(path.read_text())
    if not isinstance(state, dict) or not isinstance(state.get("studies"), dict):
        raise SystemExit(f"atlasloop watch-pacs: {path} is not a watcher's state file")
    return state


def save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(state, handle, indent=2)
    os.replace(handle.name, path)


def poll(args: argparse.Namespace, query: dict[str, str], state: dict[str, Any]) -> dict[str, Any]:
    """One poll: the new matching studies imported; what happened to each, by study UID."""
    pacs = pacs_client(args.dicomweb)
    done: dict[str, Any] = {}
    for study in pacs.studies(query):
        if study in state["studies"]:
            continue
        with tempfile.TemporaryDirectory(prefix="atlasloop-watch-") as tmp:
            folder = fetch_study(pacs, study, None, Path(tmp))
            outcomes = import_folder(args, folder)
        if any(o.status == "refused" and "UNAVAILABLE" in o.reason for o in outcomes):
            raise NotReady(f"the storage service did not take study {study}; it stays new")
        done[study] = {"at": datetime.now(UTC).isoformat(), "outcomes": [asdict(o) for o in outcomes]}
        state["studies"][study] = done[study]
        save_state(args.state, state)
    return done


def run(args: argparse.Namespace) -> int:
    query = _query(args.query)
    state = load_state(args.state)
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    if not args.once:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    while True:
        try:
            done = poll(args, query, state)
        except NotReady as exc:
            if args.once:
                raise
            print(f"waiting: {exc}", flush=True)
            done = {}
        if args.json:
            print(json.dumps(done), flush=True)
        else:
            for study, record in done.items():
                counts: dict[str, int] = {}
                for o in record["outcomes"]:
                    counts[o["status"]] = counts.get(o["status"], 0) + 1
                print(f"study {study}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), flush=True)
        if args.once:
            return 0
        deadline = time.monotonic() + args.interval
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.5)
        if stopping:
            return 0
