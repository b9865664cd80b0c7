"""The members' fine-tuning on Ray Train: a ``TorchTrainer`` whose workers (CPU processes here,
GPUs in the chart) run the recipe under DDP, member after member.

The examples travel once through Ray's object store (``ray.put`` by the caller); every worker
draws its own crops from them (seeded by rank). Rank 0 sends each epoch's loss, averaged over the
workers, to a Ray queue the service drains for progress, and at the end writes the trained state
dict to object storage, where the service picks it up: no shared file system is needed between
the cluster's nodes and the service.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from dataclasses import dataclass

import torch

from atlasloop.common import layout
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.ray_env import apply_ray_env
from atlasloop.common.settings import S3Settings
from atlasloop.models.architectures import config as architecture_config
from atlasloop.models.checkpoints import load_checkpoint
from atlasloop.training.learning import Sampler, train_epochs
from atlasloop.training.recipe import Recipe

apply_ray_env()


@dataclass(frozen=True)
class MemberJob:
    """One member to fine-tune: where it starts from."""

    architecture: str
    size: str
    base_version: str
    base_weights: bytes


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The trained network itself: Ray Train wraps it in DistributedDataParallel only when there
    is more than one worker."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, torch.nn.Module) else model


def _train_loop(cfg: dict) -> None:
    """Runs on every Ray Train worker: each member in turn, from its current weights."""
    import ray
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    recipe = Recipe(**cfg["recipe"])
    torch.set_num_threads(max(1, int(cfg["threads"])))
    revised, replay = ray.get(cfg["examples"])
    device = ray.train.torch.get_device()
    final = {}
    for member in cfg["members"]:
        architecture = member.architecture
        torch.manual_seed(recipe.seed + rank)
        source = f"{architecture}/{member.base_version}"
        module = load_checkpoint(architecture_config(architecture, member.size), member.base_weights, source)
        model = ray.train.torch.prepare_model(module, parallel_strategy="ddp" if world > 1 else None)
        sampler = Sampler(revised, replay, recipe, seed=recipe.seed * 1000 + rank)
        started = time.monotonic()

        def on_epoch(epoch: int, loss: float, architecture: str = architecture, started: float = started) -> None:
            if world > 1:
                total = torch.tensor([loss])
                dist.all_reduce(total)
                loss = float(total.item()) / world
            if rank == 0:
                cfg["progress"].put(
                    {"architecture": architecture, "epoch": epoch, "loss": loss, "seconds": time.monotonic() - started}
                )

        learning_rate = recipe.learning_rate_of(architecture)
        losses = train_epochs(model, sampler, recipe, on_epoch, device=device, learning_rate=learning_rate)
        final[architecture] = losses[-1]
        if rank == 0:
            trained = unwrapped(model)
            buffer = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in trained.state_dict().items()}, buffer)
            ObjectStore(S3Settings(**cfg["s3"])).put_bytes(
                layout.candidate_key(cfg["run_id"], architecture), buffer.getvalue()
            )
    ray.train.report({"final_loss": final})


def fit_members(
    *,
    run_id: str,
    members: list[MemberJob],
    examples_ref,
    recipe: Recipe,
    progress,
    s3: dict,
    num_workers: int,
    use_gpu: bool,
    cpus_per_worker: float,
    storage_path: str,
    torch_threads: int = 0,
) -> None:
    """Train every member in one Ray Train run: the worker group starts once (about 15 s here) for
    the whole set. Raises on a failed or diverged run."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cpus_per_worker} | ({"GPU": 1} if use_gpu else {})
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={
            "run_id": run_id,
            "members": members,
            "examples": examples_ref,
            "recipe": recipe.model_dump(),
            "progress": progress,
            "s3": s3,
            "threads": torch_threads or max(1, round(cpus_per_worker)),
        },
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=run_id, storage_path=storage_path or os.path.join(tempfile.gettempdir(), "atlasloop-ray-train")
        ),
    )
    trainer.fit()
