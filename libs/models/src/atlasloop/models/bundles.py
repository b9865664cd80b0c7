"""A model set in one file, for a site without network access: ``atlasloop models pack`` writes it,
``atlasloop models unpack`` reads it into another registry.

The bundle is a plain tar (weights are already binary; compressing them gains little) holding
``bundle.json`` (the format, the model set, each member's manifest, the label schema the members
predict, and the SHA-256 and size of every other member of the archive) and, per member,
``models/<architecture>/<version>/manifest.json`` and ``weights.pt``: the registry's own layout.

Unpacking reads nothing it has not bounded: the archive's entries must be exactly the files
``bundle.json`` lists (no links, no other paths, nothing extracted to disk), each at most the size
it declares and within ``MAX_BUNDLE_BYTES`` in all; every checksum, the label schema and every
state dict (loaded strictly into its architecture) are verified before anything is written. Then
each member is registered under its own version (a version already there with the same weights is
kept; with other weights the bundle is refused) and the set is created under its own version, so
the two sites name the same models the same way.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlasloop.common import layout
from atlasloop.common.errors import AlreadyExists, InvalidInput, NotFound, TooLarge
from atlasloop.models.records import SCHEMA, Manifest, ModelSet
from atlasloop.models.registry import ModelRegistry, build_member

FORMAT = "atlasloop-model-bundle/1"
INDEX = "bundle.json"
MAX_BUNDLE_BYTES = 32 * 1024**3
MAX_INDEX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Unpacked:
    model_set: str
    added: list[str]  # architecture@version newly registered
    kept: list[str]  # already there with the same weights


def _member_paths(manifest: Manifest) -> tuple[str, str]:
    return (
        layout.manifest_key(manifest.architecture, manifest.version),
        layout.weights_key(manifest.architecture, manifest.version),
    )


def pack(registry: ModelRegistry, version: str, out: Path) -> Path:
    """Write model set ``version`` with every member's manifest and weights to ``out``."""
    model_set = registry.model_set(version)
    files: dict[str, bytes] = {}
    manifests = []
    for member in model_set.members:
        manifest = registry.manifest(member.architecture, member.version)
        weights = registry.weights(member.architecture, member.version)
        if hashlib.sha256(weights).hexdigest() != manifest.weights_sha256:
            raise InvalidInput(f"{member.architecture}/{member.version}: stored weights do not match their SHA-256")
        manifest_key, weights_key = _member_paths(manifest)
        files[manifest_key] = json.dumps(manifest.as_json(), indent=2).encode()
        files[weights_key] = weights
        manifests.append(manifest.as_json())
    index = {
        "format": FORMAT,
        "model_set": model_set.as_json(),
        "label_schema": dict(SCHEMA),
        "members": manifests,
        "files": {name: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for name, d in files.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", delete=False) as handle:
        partial = Path(handle.name)
    try:
        with tarfile.open(partial, "w") as archive:
            for name, data in [(INDEX, json.dumps(index, indent=2).encode()), *sorted(files.items())]:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                archive.addfile(info, io.BytesIO(data))
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if not member.isfile():
        raise InvalidInput(f"bundle entry {member.name!r} is not a plain file")
    if member.size > limit:
        raise TooLarge(f"bundle entry {member.name!r} is {member.size:,} bytes, over {limit:,}")
    handle = archive.extractfile(member)
    if handle is None:
        raise InvalidInput(f"bundle entry {member.name!r} cannot be read")
    data = handle.read(limit + 1)
    if len(data) != member.size:
        raise InvalidInput(f"bundle entry {member.name!r} is cut off")
    return data


def read_bundle(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The bundle's index and files, every check of the format done; nothing written."""
    if path.stat().st_size > MAX_BUNDLE_BYTES:
        raise TooLarge(f"{path} is over the bundle limit of {MAX_BUNDLE_BYTES:,} bytes")
    try:
        archive = tarfile.open(path, "r:")  # noqa: SIM115 - closed by the with below, once it opened
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"{path} is not a model bundle (not a tar archive: {exc})") from None
    with archive:
        entries = archive.getmembers()
        by_name = {e.name: e for e in entries}
        if len(by_name) != len(entries) or INDEX not in by_name:
            raise InvalidInput(f"{path} is not a model bundle (no {INDEX}, or an entry twice)")
        try:
            index = json.loads(_read(archive, by_name[INDEX], MAX_INDEX_BYTES))
        except json.JSONDecodeError:
            raise InvalidInput(f"{INDEX} is not JSON") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise InvalidInput(f"{path}: unknown bundle format {str(index.get('format'))[:60]!r} (this reads {FORMAT})")
        declared: dict[str, dict[str, Any]] = index["files"]
        if set(by_name) - {INDEX} != set(declared):
            extra = sorted(set(by_name) - {INDEX} - set(declared))[:3]
            raise InvalidInput(f"{path}: entries {extra} are not in {INDEX}, or a listed file is missing")
        if sum(int(f["bytes"]) for f in declared.values()) > MAX_BUNDLE_BYTES:
            raise TooLarge(f"{path} declares more than {MAX_BUNDLE_BYTES:,} bytes")
        files = {}
        for name, expected in declared.items():
            data = _read(archive, by_name[name], int(expected["bytes"]))
            if hashlib.sha256(data).hexdigest() != expected["sha256"]:
                raise InvalidInput(f"{path}: {name} does not match its SHA-256: the bundle is damaged")
            files[name] = data
    return index, files


def unpack(registry: ModelRegistry, path: Path, make_current: bool = False) -> Unpacked:
    """Register the bundle's members and set in ``registry``; refuse it whole on any problem."""
    index, files = read_bundle(path)
    if index["label_schema"] != dict(SCHEMA):
        raise InvalidInput(f"{path}: its models predict another label schema than this project's")
    model_set = ModelSet.from_json(index["model_set"])
    manifests = [Manifest.from_json(m) for m in index["members"]]
    if {(m.architecture, m.version) for m in manifests} != {(r.architecture, r.version) for r in model_set.members}:
        raise InvalidInput(f"{path}: its members and its model set disagree")
    adds, kept = [], []
    for manifest in manifests:
        manifest_key, weights_key = _member_paths(manifest)
        if manifest_key not in files or weights_key not in files:
            raise InvalidInput(f"{path}: {manifest.architecture}/{manifest.version} has no files in the bundle")
        if json.loads(files[manifest_key]) != manifest.as_json():
            raise InvalidInput(f"{path}: {manifest_key} differs from {INDEX}")
        weights = files[weights_key]
        if hashlib.sha256(weights).hexdigest() != manifest.weights_sha256:
            raise InvalidInput(f"{path}: the weights of {manifest.architecture}/{manifest.version} are not its own")
        build_member(manifest, weights)  # a configuration this release builds; every tensor loads strictly
        try:
            there = registry.manifest(manifest.architecture, manifest.version)
        except NotFound:
            adds.append((manifest, weights))
            continue
        if there.weights_sha256 != manifest.weights_sha256:
            raise AlreadyExists(
                f"{manifest.architecture}/{manifest.version} exists here with other weights: nothing was unpacked"
            )
        kept.append(f"{manifest.architecture}@{manifest.version}")
    try:
        existing = registry.model_set(model_set.version)
    except NotFound:
        existing = None
    if existing is not None and existing.members != model_set.members:
        raise AlreadyExists(f"model set {model_set.version} exists here with other members: nothing was unpacked")
    for manifest, weights in adds:  # every check passed: now write
        registry.adopt(manifest, weights)
    if existing is None:
        registry.create_set(
            [(m.architecture, m.version) for m in model_set.members], make_current, version=model_set.version
        )
    elif make_current:
        registry.set_current(model_set.version)
    return Unpacked(model_set.version, [f"{m.architecture}@{m.version}" for m, _ in adds], kept)
