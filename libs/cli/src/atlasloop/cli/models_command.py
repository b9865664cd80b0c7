"""``atlasloop models import|import-nnunet|import-bundle|set|list|pack|unpack``: the model registry in object
storage; a model set moves to a site without network access as one file
(:mod:`atlasloop.models.bundles`). ``import-nnunet`` registers an nnU-Net v2 results folder as a
member (:mod:`atlasloop.models.nnunet`; needs ``pip install 'atlasloop-models[nnunet]'``),
``import-bundle`` a MONAI bundle (:mod:`atlasloop.models.monai_bundle`).

Weights come from files the operator provides (a plain PyTorch or MONAI state dict, or a
checkpoint holding one); nothing is downloaded. The S3 endpoint and credentials come from
``ATLASLOOP_S3__ENDPOINT``, ``ATLASLOOP_S3__ACCESS_KEY``, ``ATLASLOOP_S3__SECRET_KEY``,
``ATLASLOOP_S3__BUCKET`` (defaults: the local stack).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.settings import S3Settings


class CliS3(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATLASLOOP_", env_nested_delimiter="__", extra="ignore")
    s3: S3Settings = Field(
        default_factory=lambda: S3Settings(
            access_key=SecretStr("atlasloop"), secret_key=SecretStr("atlasloop-local-secret")
        )
    )


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("models", help="import checkpoints, define model sets, list them")
    sub = parser.add_subparsers(dest="models_command", required=True)
    imp = sub.add_parser("import", help="register a checkpoint file as a model version")
    imp.add_argument("--architecture", required=True)
    imp.add_argument("--size", default="paper", choices=["paper", "tiny"])
    imp.add_argument("--weights", type=Path, required=True)
    imp.add_argument("--version", default="")
    imp.add_argument("--spacing-mm", type=float, default=1.5, help="the isotropic input spacing it was trained at")
    imp.add_argument("--provenance", action="append", default=[], metavar="KEY=VALUE")
    imp.set_defaults(run=run_import)
    nn = sub.add_parser("import-nnunet", help="register an nnU-Net v2 results folder as an ensemble member")
    nn.add_argument("folder", type=Path, help="holds plans.json, dataset.json and fold_*/checkpoint_final.pth")
    nn.add_argument("--name", required=True, help="the member's name (lower case, digits, '-'), e.g. nnunet-abdomen")
    nn.add_argument("--folds", nargs="+", help="the folds to average (default: every fold_* with a checkpoint)")
    nn.add_argument("--checkpoint", default="checkpoint_final.pth")
    nn.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="CLASS=ORGAN",
        help="map a class of the model's dataset.json onto an organ (default: classes named like an organ)",
    )
    nn.add_argument("--no-mirroring", action="store_true", help="one pass instead of nnU-Net's mirrored passes")
    nn.add_argument("--version", default="")
    nn.add_argument("--spacing-mm", type=float, default=1.5, help="the grid of the set it joins")
    nn.set_defaults(run=run_import_nnunet)
    bundle = sub.add_parser("import-bundle", help="register a MONAI bundle folder as an ensemble member")
    bundle.add_argument("folder", type=Path, help="holds configs/inference.json (or .yaml) and models/model.pt")
    bundle.add_argument("--name", required=True, help="the member's name (lower case, digits, '-'), e.g. zoo-spleen")
    bundle.add_argument("--config", default="inference", help="the configuration under configs/ (default inference)")
    bundle.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="CHANNEL=ORGAN",
        help="map a channel of metadata.json's channel_def onto an organ (default: channels named like an organ)",
    )
    bundle.add_argument("--version", default="")
    bundle.add_argument("--spacing-mm", type=float, default=1.5, help="the grid of the set it joins")
    bundle.set_defaults(run=run_import_bundle)
    make = sub.add_parser("set", help="create a model set from architecture@version members")
    make.add_argument("members", nargs="+", metavar="ARCHITECTURE@VERSION")
    make.add_argument("--current", action="store_true", help="make it the current set")
    make.set_defaults(run=run_set)
    show = sub.add_parser("list", help="list model sets, newest first")
    show.set_defaults(run=run_list)
    pack = sub.add_parser("pack", help="write a model set with its weights and manifests to one file")
    pack.add_argument("model_set", help="the model set's version")
    pack.add_argument("--out", type=Path, required=True, help="the bundle to write (FILE.tar)")
    pack.set_defaults(run=run_pack)
    unpack = sub.add_parser("unpack", help="register a bundle's models and model set here, all checked first")
    unpack.add_argument("bundle", type=Path)
    unpack.add_argument("--current", action="store_true", help="make its set the current one")
    unpack.set_defaults(run=run_unpack)


def _registry():
    """The registry; ``atlasloop.models`` (torch, MONAI) is an optional part of the command:
    ``pip install atlasloop-cli[models]``."""
    try:
        from atlasloop.models.registry import ModelRegistry
    except ImportError as exc:
        raise SystemExit(
            f"atlasloop models needs the model runtime ({exc.name} is missing): pip install 'atlasloop-cli[models]'"
        ) from None

    store = ObjectStore(CliS3().s3)
    store.check_bucket()
    return ModelRegistry(store)


def run_import(args: argparse.Namespace) -> int:
    if not args.weights.is_file():
        raise SystemExit(f"atlasloop models import: {args.weights} is not a file")
    provenance = dict(item.split("=", 1) for item in args.provenance if "=" in item)
    provenance.setdefault("source_file", args.weights.name)
    from atlasloop.imaging.preprocess import PreprocessConfig

    manifest = _registry().register(
        args.architecture,
        args.size,
        args.weights.read_bytes(),
        provenance,
        version=args.version,
        preprocess=PreprocessConfig(spacing_mm=args.spacing_mm),
    )
    print(f"registered {manifest.architecture}@{manifest.version} (sha256 {manifest.weights_sha256[:12]})")
    return 0


def _class_map_option(items: list[str], command: str, source: str) -> dict[str, str]:
    """``--map`` options as {source class: organ}; every one must be SOURCE=ORGAN."""
    explicit = dict(item.split("=", 1) for item in items if "=" in item)
    if len(explicit) != len(items):
        raise SystemExit(f"atlasloop models {command}: --map takes {source}=ORGAN")
    return explicit


def run_import_nnunet(args: argparse.Namespace) -> int:
    registry = _registry()
    try:
        from atlasloop.models.nnunet import class_map, read_results_folder
    except ImportError as exc:
        raise SystemExit(
            f"importing nnU-Net needs {exc.name}: pip install 'atlasloop-models[nnunet]', then "
            "pip install --no-deps nnunetv2 dynamic_network_architectures (requirements-nnunet.txt)"
        ) from None
    from atlasloop.imaging.preprocess import PreprocessConfig

    explicit = _class_map_option(args.map, "import-nnunet", "CLASS")
    payload = read_results_folder(args.folder, args.folds, args.checkpoint)
    classes = class_map(payload, explicit or None)
    labels = {v: k for k, v in payload.labels.items()}
    manifest = registry.register_nnunet(
        args.name,
        payload,
        classes,
        mirroring=not args.no_mirroring,
        version=args.version,
        preprocess=PreprocessConfig(spacing_mm=args.spacing_mm),
        provenance={"source_folder": args.folder.name},
    )
    mapped = ", ".join(f"{labels[k]}->{v}" for k, v in sorted(classes.items()))
    dropped = sorted(name for name, value in payload.labels.items() if value and value not in classes)
    print(f"registered {manifest.architecture}@{manifest.version}: folds {', '.join(sorted(payload.folds))}; {mapped}")
    if dropped:
        print(f"classes left out (no organ of the project): {', '.join(dropped)}")
    return 0


def run_import_bundle(args: argparse.Namespace) -> int:
    registry = _registry()
    from atlasloop.imaging.preprocess import PreprocessConfig
    from atlasloop.models.monai_bundle import class_map, read_bundle_folder

    explicit = _class_map_option(args.map, "import-bundle", "CHANNEL")
    payload = read_bundle_folder(args.folder, args.config)
    classes = class_map(payload, explicit or None)
    manifest = registry.register_bundle(
        args.name,
        payload,
        classes,
        version=args.version,
        preprocess=PreprocessConfig(spacing_mm=args.spacing_mm),
        provenance={"source_folder": args.folder.name},
    )
    channels = payload.channels
    mapped = ", ".join(f"{channels[k]}->{v}" for k, v in sorted(classes.items()))
    dropped = sorted(name for index, name in channels.items() if index and index not in classes)
    print(f"registered {manifest.architecture}@{manifest.version}: {mapped}")
    if dropped:
        print(f"channels left out (no organ of the project): {', '.join(dropped)}")
    return 0


def run_set(args: argparse.Namespace) -> int:
    members = [tuple(m.split("@", 1)) for m in args.members]
    if any(len(m) != 2 for m in members):
        raise SystemExit("atlasloop models set: members are ARCHITECTURE@VERSION")
    document = _registry().create_set(members, make_current=args.current)
    print(f"model set {document.version}{' (current)' if args.current else ''}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    print(json.dumps([s.as_json() for s in _registry().model_sets()], indent=2))
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from atlasloop.models.bundles import pack

    path = pack(_registry(), args.model_set, args.out)
    print(f"model set {args.model_set} -> {path} ({path.stat().st_size:,} bytes)")
    return 0


def run_unpack(args: argparse.Namespace) -> int:
    from atlasloop.models.bundles import unpack

    done = unpack(_registry(), args.bundle, make_current=args.current)
    print(
        f"model set {done.model_set}{' (current)' if args.current else ''}: "
        f"{len(done.added)} models added, {len(done.kept)} already here"
    )
    return 0
