"""The ensemble on Ray Serve: one deployment per architecture, and an ingress that fans a case out
to every member concurrently, combines their outputs and makes them durable.

This module runs on the Ray cluster, never in the inference service's process. Whoever owns the
cluster deploys it: KubeRay from the chart's ``serveConfigV2``, the local stack through the Ray
dashboard's REST API (as ``serve deploy`` does); ``app(args)`` is the builder both import
(``atlasloop.inference.serve_app:app``). The inference service reaches the ingress only over the
network, through Serve's HTTP proxy: ``POST /<app>/run`` with a ``RunRequest`` as JSON, answered
with ``RunResponse`` JSON lines as the run goes (Serve's HTTP proxy binds the host it is given; its
gRPC proxy would bind every interface).

Model sets change without a redeploy. Each request is pinned to one set (the one it names, else
the registry's current set when it arrives), and every member is asked for that set's version, so
an answer never mixes sets and always names its set. Members keep the versions they were asked for
(the two most recent) and preload the registry's current version when it changes, so requests in
flight during a swap finish on the set they started with. The CT travels once through Ray's object
store; members return ``MemberOutput`` (quantised crops plus the float probabilities the mean
needs), and the ingress combines them in the set's order with the one ensemble rule.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field

import ray
from google.protobuf import json_format
from ray import serve
from ray.serve import Application
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from atlasloop.common import layout
from atlasloop.common.errors import AtlasError, NotFound, NotReady
from atlasloop.common.events import EventProducer
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.settings import KafkaSettings, S3Settings, merged
from atlasloop.common.tls import ClientTls
from atlasloop.imaging.preprocess import preprocess_image, to_native
from atlasloop.imaging.stream import load_nifti_chunks
from atlasloop.inference.first_set import FIRST_SET
from atlasloop.inference.outputs import OutputWriter
from atlasloop.inference.settings import InferenceSettings
from atlasloop.inference.v1 import ensemble_pb2, inference_pb2
from atlasloop.models.ensemble import InferenceConfig, MemberOutput, combine, run_member
from atlasloop.models.records import LoadedModel, ModelSet, shared_preprocess
from atlasloop.models.registry import ModelRegistry

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 64 * 1024  # a case id, a version and a trace context
KEEP_VERSIONS = 2  # a member holds the current version and the one before it (requests in flight)


@dataclass
class AppArgs:
    """What the application needs; from KubeRay's serveConfigV2 ``args`` or the stack's deploy."""

    s3: dict
    kafka: dict
    storage_target: str
    storage_token: str
    client_tls: dict = field(default_factory=dict)  # ClientTls: how the replicas call storage
    architectures: tuple[str, ...] = ()  # one deployment each; the current set's when empty
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    overlap: float = 0.5
    sw_batch_size: int = 2
    follow_s: float = 5.0  # how often members look for a new current set
    mirror_axes: tuple[int, ...] = ()  # test-time mirroring (atlasloop.models.ensemble.InferenceConfig)


def _registry(s3: dict) -> ModelRegistry:
    return ModelRegistry(ObjectStore(S3Settings(**s3)))


@serve.deployment(max_ongoing_requests=2, health_check_period_s=10)
class Member:
    def __init__(
        self,
        s3: dict,
        architecture: str,
        overlap: float,
        sw_batch_size: int,
        follow_s: float,
        mirror_axes: tuple[int, ...] = (),
    ) -> None:
        self.architecture = architecture
        self.registry = _registry(s3)
        device = "cuda" if _gpu() else "cpu"
        self.config = InferenceConfig(
            overlap=overlap, sw_batch_size=sw_batch_size, device=device, mirror_axes=tuple(mirror_axes)
        )
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.waiting = False  # True while no model set is current yet (a new install, FIRST_SET)
        self._follow_current()  # serve the current set from the start
        self._thread = threading.Thread(target=self._follow, args=(follow_s,), name="follow-current", daemon=True)
        self._thread.start()

    def _model(self, version: str) -> LoadedModel:
        with self._lock:
            if version not in self._models:
                self._models[version] = self.registry.load(self.architecture, version)
                log.info("member loaded", extra={"member": f"{self.architecture}@{version}"})
                while len(self._models) > KEEP_VERSIONS:
                    self._models.popitem(last=False)
            self._models.move_to_end(version)
            return self._models[version]

    def _follow_current(self) -> None:
        try:
            current = self.registry.model_set(self.registry.current())
        except NotFound:
            if not self.waiting:
                log.warning("waiting for a first model set", extra={"member": self.architecture, "hint": FIRST_SET})
            self.waiting = True
            return
        self.waiting = False
        version = next((m.version for m in current.members if m.architecture == self.architecture), None)
        if version is not None:
            self._model(version)

    def _follow(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self._follow_current()
            except Exception:
                log.warning("could not look for a new current model set", exc_info=True)

    def check_health(self) -> None:
        """Unhealthy when the current set's model could not be loaded; a new install with no set
        yet is healthy and idle (the ensemble answers NotReady until one is made current)."""
        if not self._models and not self.waiting:
            raise RuntimeError(f"{self.architecture}: no model loaded")

    def predict(self, image, version: str, native=None) -> MemberOutput:
        """This member on the preprocessed image; an imported member (nnU-Net, a MONAI bundle) on
        ``native`` (the CT as stored and its grid transform), which it preprocesses as its framework does."""
        return run_member(self._model(version), image, self.config, native=native)


@serve.deployment(max_ongoing_requests=4, health_check_period_s=10)
class Ensemble:
    def __init__(self, members: dict, args: dict) -> None:
        self.members = members  # architecture -> DeploymentHandle
        self._args = AppArgs(**args)
        self._store = ObjectStore(S3Settings(**self._args.s3))
        self.registry = ModelRegistry(self._store)
        self._writer = OutputWriter(
            self._store,
            EventProducer(KafkaSettings(**self._args.kafka), "inference"),
            self._args.storage_target,
            self._args.storage_token,
            ClientTls(**self._args.client_tls),
        )

    def check_health(self) -> None:
        if not self.members:
            raise RuntimeError("no ensemble members")

    async def __call__(self, http: Request) -> Response:
        """``POST /<app>/run`` with a ``RunRequest`` as JSON: ``RunResponse`` JSON lines as the run
        goes, the last one the outputs or the error (the status line is sent before the run ends)."""
        if http.method != "POST" or not http.url.path.rstrip("/").endswith("/run"):
            return PlainTextResponse("POST a RunRequest to /run\n", status_code=404)
        body = await http.body()
        if len(body) > MAX_REQUEST_BYTES:
            return PlainTextResponse(f"a RunRequest is at most {MAX_REQUEST_BYTES} bytes\n", status_code=413)
        try:
            request = json_format.Parse(body, ensemble_pb2.RunRequest())
        except json_format.ParseError as exc:
            return PlainTextResponse(f"not a RunRequest: {exc}\n", status_code=400)
        return StreamingResponse(self._lines(request), media_type="application/x-ndjson")

    async def _lines(self, request: ensemble_pb2.RunRequest) -> AsyncIterator[bytes]:
        try:
            async for message in self._run(request):
                yield _line(message)
        except AtlasError as exc:
            yield _line(ensemble_pb2.RunResponse(error=ensemble_pb2.RunError(code=exc.code.name, message=str(exc))))
        except Exception as exc:  # the service answers INTERNAL; the details stay in this replica's log
            log.exception("ensemble run failed", extra={"case_id": request.case_id})
            yield _line(
                ensemble_pb2.RunResponse(
                    error=ensemble_pb2.RunError(code="INTERNAL", message=f"{type(exc).__name__}: {exc}"[:500])
                )
            )

    async def _run(self, request: ensemble_pb2.RunRequest) -> AsyncIterator[ensemble_pb2.RunResponse]:
        clock = _Phases()
        model_set = self._model_set(request.model_set or self._current())
        done = self._writer.done(request.case_id, model_set.version)
        if done is not None:  # computed and announced before: nothing twice
            yield _finished(model_set.version, done, clock, repeated=True)
            return
        ct = load_nifti_chunks(self._store.iter_chunks(layout.ct_key(request.case_id)), request.case_id)
        clock.lap("read_ct")
        manifests = [self.registry.manifest(m.architecture, m.version) for m in model_set.members]
        pre = preprocess_image(ct, shared_preprocess(manifests))
        image = ray.put(pre.image)
        # the native CT goes to the object store only when a member predicts from it (an imported one)
        native_ref = ray.put((ct, pre.grid)) if any(m.imported for m in manifests) else None
        clock.lap("preprocess")
        calls = [
            asyncio.ensure_future(
                self.members[m.architecture].predict.remote(image, m.version, native_ref if manifest.imported else None)
            )
            for m, manifest in zip(model_set.members, manifests, strict=True)
        ]
        for finished in asyncio.as_completed(calls):
            result: MemberOutput = await finished
            architecture, _, version = result.member.partition("@")
            yield ensemble_pb2.RunResponse(
                member_finished=inference_pb2.MemberFinished(
                    member=inference_pb2.ModelVersion(architecture=architecture, version=version),
                    seconds=result.seconds,
                )
            )
        results = [call.result() for call in calls]  # the set's order, whatever order they finished in
        clock.lap("members")
        output, labels = combine(pre.image.shape, pre.grid.cropped_affine, results)
        compact, native = output.to_bytes(), to_native(labels, pre.grid, order=0)
        clock.lap("combine")
        record = await asyncio.to_thread(
            self._writer.write, request.case_id, model_set.version, compact, native, dict(request.trace_context)
        )
        clock.lap("write")
        yield _finished(model_set.version, record, clock, repeated=False)

    def _current(self) -> str:
        """The current set; NotReady (retried later, never dead-lettered) while there is none."""
        try:
            return self.registry.current()
        except NotFound:
            raise NotReady(FIRST_SET) from None

    def _model_set(self, version: str) -> ModelSet:
        model_set = self.registry.model_set(version)
        missing = [m.architecture for m in model_set.members if m.architecture not in self.members]
        if missing:
            raise NotReady(
                f"model set {version} needs {', '.join(missing)}, which this application does not serve; "
                "redeploy it with those architectures"
            )
        return model_set


def _line(message: ensemble_pb2.RunResponse) -> bytes:
    return json_format.MessageToJson(message, indent=None).encode() + b"\n"


class _Phases:
    """Seconds per step of one run."""

    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now

    def total(self) -> float:
        return time.perf_counter() - self.started


def _finished(model_set: str, record: dict, clock: _Phases, repeated: bool) -> ensemble_pb2.RunResponse:
    return ensemble_pb2.RunResponse(
        ensemble_finished=inference_pb2.EnsembleFinished(
            model_set=model_set,
            predictions_prefix=record["predictions_prefix"],
            label_version=record["label_version"],
            seconds=0.0 if repeated else clock.total(),
        ),
        repeated=repeated,
        phase_seconds=clock.seconds,
    )


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def app_args(settings: InferenceSettings) -> dict:
    """The builder's arguments from inference settings, credentials included (read on the Ray pods)."""
    s = settings
    return {
        "s3": s.s3.with_secrets(),
        "kafka": s.kafka.with_secrets(),
        "storage_target": s.storage_target,
        "storage_token": s.storage_token,
        "client_tls": s.client_tls.model_dump(mode="json"),
        "num_cpus": s.num_cpus,
        "num_gpus": s.num_gpus,
        "overlap": s.overlap,
        "sw_batch_size": s.sw_batch_size,
        "mirror_axes": list(s.mirror_axes),
    }


def resolve_args(args: dict) -> AppArgs:
    """The arguments given (KubeRay's ``serveConfigV2``, the stack's deploy request: never a
    credential) over the ``ATLASLOOP_INFERENCE_*`` environment of the Ray pods (the chart's secret),
    nested blocks merged key by key: ``{"s3": {"bucket": "b"}}`` keeps the pods' S3 keys."""
    resolved = merged(app_args(InferenceSettings()), args)
    tuples: dict[str, tuple] = {name: tuple(resolved.get(name) or ()) for name in ("architectures", "mirror_axes")}  # type: ignore[arg-type]
    return AppArgs(**(resolved | tuples))  # type: ignore[arg-type]


def app(args: dict) -> Application:
    """The ensemble application: one member deployment per architecture (those of ``args``, else of
    the registry's current set) behind the ingress."""
    parsed = resolve_args(args)
    registry = _registry(parsed.s3)
    architectures = parsed.architectures or tuple(
        m.architecture for m in registry.model_set(registry.current()).members
    )
    members = {}
    for architecture in architectures:
        deployment = Member.options(  # type: ignore[attr-defined]  # @serve.deployment makes it a Deployment
            name=architecture, ray_actor_options={"num_cpus": parsed.num_cpus, "num_gpus": parsed.num_gpus}
        )
        members[architecture] = deployment.bind(
            parsed.s3, architecture, parsed.overlap, parsed.sw_batch_size, parsed.follow_s, parsed.mirror_axes
        )
    ingress = Ensemble.options(ray_actor_options={"num_cpus": min(parsed.num_cpus, 0.5)})  # type: ignore[attr-defined]
    return ingress.bind(members, asdict(parsed))
