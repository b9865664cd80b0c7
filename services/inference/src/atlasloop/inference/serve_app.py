"""The ensemble on Ray Serve: one deployment per architecture, and an ingress that fans a case out
to every member concurrently, combines their outputs and makes them durable.

``app(args)`` is the application builder KubeRay's ``serveConfigV2`` imports
(``atlasloop.inference.serve_app:app``); the inference service deploys the same builder itself
when ``deploy_serve`` is on (one machine, tests). Each member replica keeps its model loaded
between requests; ``check_health`` fails until it is. The CT travels once through Ray's object
store (``ray.put``); members return ``atlasloop.models.ensemble.MemberOutput`` (quantised crops
plus the float probabilities the mean needs, cropped to where they are not negligible), and the
ingress combines them in the set's order with the one ensemble rule.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass

import ray
from ray import serve
from ray.serve import Application

from atlasloop.common import layout
from atlasloop.common.events import EventProducer
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.settings import KafkaSettings, S3Settings
from atlasloop.imaging.preprocess import PreprocessConfig, preprocess_image, to_native
from atlasloop.imaging.stream import load_nifti_chunks
from atlasloop.inference.outputs import OutputWriter
from atlasloop.inference.settings import InferenceSettings
from atlasloop.models.ensemble import InferenceConfig, MemberOutput, combine, run_member
from atlasloop.models.records import shared_preprocess
from atlasloop.models.registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass
class AppArgs:
    """What the application needs; from KubeRay's serveConfigV2 ``args`` or the service's settings."""

    s3: dict
    kafka: dict
    storage_target: str
    storage_token: str
    model_set: str = ""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    overlap: float = 0.5
    sw_batch_size: int = 2


@serve.deployment(max_ongoing_requests=2, health_check_period_s=10)
class Member:
    def __init__(self, s3: dict, architecture: str, version: str, overlap: float, sw_batch_size: int) -> None:
        self.name = f"{architecture}@{version}"
        device = "cuda" if _gpu() else "cpu"
        self.config = InferenceConfig(overlap=overlap, sw_batch_size=sw_batch_size, device=device)
        self.model = ModelRegistry(ObjectStore(S3Settings(**s3))).load(architecture, version)

    def check_health(self) -> None:
        if self.model is None:
            raise RuntimeError(f"{self.name} is not loaded")

    def predict(self, image) -> MemberOutput:
        return run_member(self.model, image, self.config)


@serve.deployment(max_ongoing_requests=4, health_check_period_s=10)
class Ensemble:
    def __init__(self, members: list, model_set: str, args: dict, preprocess: dict) -> None:
        self.members = members
        self.model_set = model_set
        self.preprocess = PreprocessConfig(**preprocess)  # the members' shared input grid
        self._args = AppArgs(**args)
        self._store = ObjectStore(S3Settings(**self._args.s3))
        self._writer = OutputWriter(
            self._store,
            EventProducer(KafkaSettings(**self._args.kafka), "inference"),
            self._args.storage_target,
            self._args.storage_token,
        )

    def check_health(self) -> None:
        if not self.members:
            raise RuntimeError("no ensemble members")

    async def run(self, case_id: str):
        """Progress of one case: each member as it finishes, then the durable ensemble outputs."""
        started = time.perf_counter()
        done = self._writer.done(case_id, self.model_set)
        if done is not None:  # computed and announced before: nothing twice
            yield {"kind": "ensemble", **done, "model_set": self.model_set, "seconds": 0.0, "repeated": True}
            return
        ct = load_nifti_chunks(self._store.iter_chunks(layout.ct_key(case_id)), case_id)
        pre = preprocess_image(ct, self.preprocess)
        image = ray.put(pre.image)
        calls = [asyncio.ensure_future(self._call(member, image)) for member in self.members]
        for finished in asyncio.as_completed(calls):
            result: MemberOutput = await finished
            yield {"kind": "member", "member": result.member, "seconds": result.seconds}
        results = [call.result() for call in calls]  # the set's order, whatever order they finished in
        output, labels = combine(pre.image.shape, pre.grid.cropped_affine, results)
        record = await asyncio.to_thread(
            self._writer.write, case_id, self.model_set, output.to_bytes(), to_native(labels, pre.grid, order=0)
        )
        yield {
            "kind": "ensemble",
            **record,
            "model_set": self.model_set,
            "seconds": time.perf_counter() - started,
            "repeated": False,
        }

    async def _call(self, member, image):
        return await member.predict.remote(image)


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def app_args(settings: InferenceSettings, model_set: str = "") -> dict:
    """The builder's arguments from the service's settings."""
    s = settings
    return {
        "s3": s.s3.with_secrets(),
        "kafka": s.kafka.model_dump(mode="json"),
        "storage_target": s.storage_target,
        "storage_token": s.storage_token,
        "model_set": model_set,
        "num_cpus": s.num_cpus,
        "num_gpus": s.num_gpus,
        "overlap": s.overlap,
        "sw_batch_size": s.sw_batch_size,
    }


def resolve_args(args: dict) -> AppArgs:
    """The inference service passes every argument. Under KubeRay, ``serveConfigV2`` passes none
    (or only some): the rest come from the ``ATLASLOOP_INFERENCE_*`` environment the chart gives
    the Ray pods, so no credential is written into the RayService resource."""
    if not {"s3", "kafka", "storage_target", "storage_token"} <= args.keys():
        args = app_args(InferenceSettings(), args.get("model_set", "")) | args
    return AppArgs(**args)


def app(args: dict) -> Application:
    """Build the ensemble application for the model set in ``args`` (the current one when empty)."""
    parsed = resolve_args(args)
    registry = ModelRegistry(ObjectStore(S3Settings(**parsed.s3)))
    model_set = parsed.model_set or registry.current()
    members, manifests = [], []
    for member in registry.model_set(model_set).members:
        manifests.append(registry.manifest(member.architecture, member.version))
        deployment = Member.options(  # type: ignore[attr-defined]  # @serve.deployment makes it a Deployment
            name=member.architecture, ray_actor_options={"num_cpus": parsed.num_cpus, "num_gpus": parsed.num_gpus}
        )
        members.append(
            deployment.bind(parsed.s3, member.architecture, member.version, parsed.overlap, parsed.sw_batch_size)
        )
    ingress = Ensemble.options(ray_actor_options={"num_cpus": min(parsed.num_cpus, 0.5)})  # type: ignore[attr-defined]
    return ingress.bind(members, model_set, asdict(parsed), asdict(shared_preprocess(manifests)))
