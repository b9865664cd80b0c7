"""The page's HTTP side: sign-in, the annotator's and the reviewer's calls, the static page.

Every call that touches a case goes to the services with the signed-in person's own token, so the
services decide what they may do (an annotator reads only the cases they lease or revised, through
tracking's grants; only a reviewer lists and reviews revisions). Blocking gRPC calls run in the
thread pool; request bodies are bounded before they are read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Container
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from atlasloop.client import Client
from atlasloop.common.auth import build_authenticator
from atlasloop.common.domain import NO_ORGAN, ErrorTag, RegionVerdictKind, organ_from_proto, organ_to_proto
from atlasloop.common.errors import AtlasError, InvalidInput
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.labels import ORGAN_COLORS, ORGAN_IDS, ORGANS
from atlasloop.method.error_taxonomy import AI_TAGS, diff_volumes
from atlasloop.rendering.v1 import rendering_pb2
from atlasloop.tracking.v1 import tracking_pb2
from atlasloop.training.v1 import training_pb2
from atlasloop.web import oidc
from atlasloop.web.headers import SecurityHeaders
from atlasloop.web.sessions import CSRF_HEADER, Sealer, Session, join_sealed, part_names, split_sealed
from atlasloop.web.settings import WebSettings
from atlasloop.web.volumes import VolumeCache, apply_edits, changed_organs, grid_of

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
PLANES = {
    "axial": rendering_pb2.PLANE_AXIAL,
    "coronal": rendering_pb2.PLANE_CORONAL,
    "sagittal": rendering_pb2.PLANE_SAGITTAL,
}
WINDOWS = {
    "abdomen": rendering_pb2.WINDOW_PRESET_ABDOMEN,
    "liver": rendering_pb2.WINDOW_PRESET_LIVER,
    "bone": rendering_pb2.WINDOW_PRESET_BONE,
}
HTTP_OF = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
MAX_SECONDS = 24 * 3600.0


def _is_number(value: Any) -> bool:
    """A JSON number (true and false are not numbers, though Python counts them as ints)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _one_of(value: Any, names: Container[str]) -> bool:
    """A JSON value is one of ``names``: a string first (a list or an object would not even hash)."""
    return isinstance(value, str) and value in names


class Clients:
    """One gRPC client per signed-in token (its channels and case grants are reused), the least
    recently used closed first."""

    def __init__(self, settings: WebSettings, capacity: int = 64) -> None:
        self._settings, self._capacity = settings, capacity
        self._items: OrderedDict[str, Client] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, session: Session) -> Client:
        key = hashlib.sha256(session.token.encode()).hexdigest()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            tls = self._settings.client_tls if self._settings.client_tls.enabled else None
            client = Client(self._settings.targets, {role: session.token for role in session.roles}, 60, tls)
            self._items[key] = client
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)[1].close()
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._items.values():
                client.close()
            self._items.clear()


OIDC_COOKIE = "atlasloop_oidc"
MAX_TOKEN_BYTES = 8192  # a person's bearer token; its sealed session fits the cookies (sessions.MAX_PARTS)


def build(settings: WebSettings) -> Starlette:
    if settings.oidc.enabled and settings.auth.mode != "jwt":
        raise InvalidInput("OIDC sign-in needs auth.mode 'jwt': the provider's tokens are what the services verify")
    authenticator = build_authenticator(settings.auth)
    key = settings.session_key.get_secret_value().encode() if settings.session_key else None
    sealer = Sealer(key, settings.session_ttl_s)
    clients = Clients(settings)
    volumes = VolumeCache(settings.volume_cache_bytes)
    warmers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="warm")

    def session_of(request: Request, role: str | None = None) -> Session:
        session = sealer.open(join_sealed(request.cookies))
        if session is None:
            raise HTTPException(401, "sign in first")
        if request.method != "GET" and request.headers.get(CSRF_HEADER) != "1":
            raise HTTPException(403, f"requests that change something must carry the {CSRF_HEADER} header")
        if role and role not in session.roles:
            raise HTTPException(403, f"this needs the {role} role; {session.name} holds {', '.join(session.roles)}")
        return session

    def acting_role(request: Request, session: Session) -> str:
        """The role a case is read as: the page's view (annotator or reviewer), which the session must hold."""
        role = request.query_params.get("as", "annotator")
        if role not in ("annotator", "reviewer", "admin"):
            raise HTTPException(400, "as must be annotator, reviewer or admin")
        if role not in session.roles:
            raise HTTPException(403, f"{session.name} does not hold the {role} role")
        return role

    async def body_json(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit():
            raise HTTPException(411, "a JSON body with its Content-Length")
        if int(declared) > settings.max_request_bytes:
            raise HTTPException(413, f"request bodies are at most {settings.max_request_bytes} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > settings.max_request_bytes:
                raise HTTPException(413, f"request bodies are at most {settings.max_request_bytes} bytes")
        try:
            value = json.loads(data)
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        if not isinstance(value, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return value

    def plane_index(request: Request) -> tuple[str, int]:
        plane = request.query_params.get("plane", "axial")
        if plane not in PLANES:
            raise HTTPException(400, f"plane must be one of {', '.join(PLANES)}")
        raw = request.query_params.get("index", "")
        if not raw.lstrip("-").isdigit():
            raise HTTPException(400, "index must be an integer")
        return plane, int(raw)

    def label_volume(client: Client, role: str, case_id: str, version: str):
        client.case_auth(role, case_id)  # an annotator without a grant for this case is refused here
        return volumes.get((case_id, version), lambda: client.labels_for_display(case_id, version, role=role))

    # ---- sign-in ----

    def open_session(token: str) -> tuple[Session, str]:
        """Check a person's token as the services will; the session and its sealed cookie value."""
        if len(token) > MAX_TOKEN_BYTES:
            raise HTTPException(400, f"tokens of more than {MAX_TOKEN_BYTES} bytes are not accepted here")
        try:
            principal = authenticator.authenticate(token)
        except AtlasError:
            raise HTTPException(401, "this token is not accepted") from None
        roles = tuple(sorted(r.value for r in principal.roles if r.value != "service"))
        if not roles:
            raise HTTPException(403, "service tokens cannot sign in to the page")
        sealed, session = sealer.seal(token, principal.name, roles)
        log.info("signed in", extra={"principal": session.name})
        return session, sealed

    def set_session_cookie(response: Response, sealed: str) -> None:
        """The session in as many cookies as it needs (``atlasloop.web.sessions``); parts an earlier,
        longer session left are removed, or they would be joined to this one."""
        parts = split_sealed(sealed)
        for name, value in parts:
            response.set_cookie(
                name,
                value,
                max_age=settings.session_ttl_s,
                httponly=True,
                samesite="strict",
                secure=settings.secure_cookies,
                path="/",
            )
        for name in part_names()[len(parts) :]:
            response.delete_cookie(name, path="/")

    async def sign_in(request: Request) -> Response:
        token = (await body_json(request)).get("token")
        if not isinstance(token, str) or not token:
            raise HTTPException(400, "give the token you were issued")
        session, sealed = open_session(token)
        response = JSONResponse({"name": session.name, "roles": list(session.roles)})
        set_session_cookie(response, sealed)
        return response

    async def config(request: Request) -> Response:
        """What the sign-in view offers: the identity provider's button, or the token field."""
        return JSONResponse({"oidc": settings.oidc.enabled, "token_sign_in": not settings.oidc.enabled})

    async def oidc_login(request: Request) -> Response:
        if not settings.oidc.enabled:
            raise HTTPException(404, "sign-in with an identity provider is not configured")
        attempt = oidc.Attempt.new()
        response = RedirectResponse(oidc.authorization_url(settings.oidc, attempt), status_code=302)
        # Lax, not Strict: the browser comes back from the provider's site with a top-level GET
        response.set_cookie(
            OIDC_COOKIE,
            sealer.seal_value("oidc", attempt.as_dict()),
            max_age=oidc.ATTEMPT_TTL_S,
            httponly=True,
            samesite="lax",
            secure=settings.secure_cookies,
            path="/api/oidc/",
        )
        return response

    async def oidc_callback(request: Request) -> Response:
        if not settings.oidc.enabled:
            raise HTTPException(404, "sign-in with an identity provider is not configured")
        params = request.query_params
        if "error" in params:
            reason = f"{params['error']}: {params.get('error_description', '')}"[:300]
            raise HTTPException(401, f"the identity provider did not sign you in ({reason})")
        value = sealer.open_value("oidc", request.cookies.get(OIDC_COOKIE), oidc.ATTEMPT_TTL_S)
        code, state = params.get("code", ""), params.get("state", "")
        if value is None:
            raise HTTPException(400, "this sign-in attempt has expired or was not started here: sign in again")
        attempt = oidc.Attempt.from_dict(value)
        if not code or len(code) > 4096 or not secrets.compare_digest(state.encode(), attempt.state.encode()):
            raise HTTPException(400, "the provider's answer does not match this sign-in attempt (state)")
        tokens = await run_in_threadpool(oidc.exchange, settings.oidc, code, attempt)
        if isinstance(tokens.get("id_token"), str):
            oidc.check_id_token(tokens["id_token"], settings.auth, settings.oidc, attempt.nonce)
        _session, sealed = open_session(tokens["access_token"])
        response = RedirectResponse("/", status_code=303)
        set_session_cookie(response, sealed)
        response.delete_cookie(OIDC_COOKIE, path="/api/oidc/")
        return response

    async def sign_out(request: Request) -> Response:
        # the browser goes on to the provider's logout when there is one (atlasloop.web.oidc)
        response = JSONResponse({"signed_out": True, "logout_url": oidc.logout_url(settings.oidc)})
        for name in part_names():
            response.delete_cookie(name, path="/")
        return response

    async def me(request: Request) -> Response:
        session = session_of(request)
        return JSONResponse({"name": session.name, "roles": list(session.roles)})

    async def schema(request: Request) -> Response:
        return JSONResponse(
            {
                "organs": [
                    {"label": label, "name": name, "color": list(ORGAN_COLORS[name])} for label, name in ORGANS.items()
                ]
            }
        )

    # ---- the annotator ----

    def warm(client: Client, reply: tracking_pb2.NextCaseResponse) -> None:
        """Start loading what the case's first picture needs while the answer travels to the
        browser: the label version into this server's cache, and into the rendering service's the
        first organ's attention and the CT's bricks of the three middle planes the page opens on
        (small pictures of them, thrown away). The page's own requests then wait on these loads
        (both caches load a key once, and a brick is loaded once) instead of starting them a round
        trip later. A failure here only costs the time saved."""
        case_id, version = reply.lease.case_id, reply.label_version
        heat = reply.organs[0] if reply.organs else NO_ORGAN

        def logged(future: Future) -> None:
            if future.exception() is not None:
                log.info("warming case %s failed: %s", case_id, future.exception())

        def middle_planes() -> None:
            shape = case_grid(client, case_id)["shape"]  # RAS, as the page indexes it
            for plane, axis in (("axial", 2), ("coronal", 1), ("sagittal", 0)):
                view = rendering_pb2.SliceView(
                    case_id=case_id,
                    plane=PLANES[plane],
                    index=shape[axis] // 2,
                    window=WINDOWS["abdomen"],
                    heatmap_organ=heat if plane == "axial" else NO_ORGAN,
                    max_size_px=64,
                )
                warmers.submit(client.render_slice, view).add_done_callback(logged)

        for job in (lambda: label_volume(client, "annotator", case_id, version), middle_planes):
            warmers.submit(job).add_done_callback(logged)

    def case_grid(client: Client, case_id: str) -> dict:
        """The case's grid as the page views it, from its geometry (no volume read)."""
        geometry = client.case_info(case_id, role="annotator").geometry
        return grid_of(list(geometry.shape), np.asarray(geometry.affine, dtype=np.float64).reshape(4, 4))

    async def next_case(request: Request) -> Response:
        session = session_of(request, "annotator")
        client = clients.of(session)
        reply = await run_in_threadpool(client.next_case)
        if reply is None:
            return JSONResponse({"lease": None, "message": "the queue is empty"})
        warm(client, reply)
        grid = await run_in_threadpool(case_grid, client, reply.lease.case_id)
        return JSONResponse({"lease": _lease(reply, True) | {"grid": grid}})

    async def lease(request: Request) -> Response:
        session = session_of(request, "annotator")
        client = clients.of(session)
        reply = await run_in_threadpool(client.get_lease, request.path_params["lease_id"])
        found = _lease(reply, reply.active)
        if reply.active:
            found["grid"] = await run_in_threadpool(case_grid, client, reply.lease.case_id)
        return JSONResponse({"lease": found})

    async def grid(request: Request) -> Response:
        session = session_of(request)
        role = acting_role(request, session)
        case_id, version = request.path_params["case_id"], request.path_params["version"]
        volume = await run_in_threadpool(label_volume, clients.of(session), role, case_id, version)
        return JSONResponse(volume.grid())

    async def label_slice(request: Request) -> Response:
        session = session_of(request)
        role = acting_role(request, session)
        plane, index = plane_index(request)
        case_id, version = request.path_params["case_id"], request.path_params["version"]
        volume = await run_in_threadpool(label_volume, clients.of(session), role, case_id, version)
        picture = volume.picture(plane, index)
        return Response(
            picture.tobytes(),
            media_type="application/octet-stream",
            headers={
                "x-rows": str(picture.shape[0]),
                "x-cols": str(picture.shape[1]),
                "cache-control": "private, max-age=3600",
            },
        )

    async def image(request: Request) -> Response:
        session = session_of(request)
        role = acting_role(request, session)
        plane, index = plane_index(request)
        window = request.query_params.get("window", "abdomen")
        if window not in WINDOWS:
            raise HTTPException(400, f"window must be one of {', '.join(WINDOWS)}")
        heat = request.query_params.get("heat", "")
        if heat and heat not in ORGAN_IDS:
            raise HTTPException(400, f"heat must name an organ: {', '.join(ORGAN_IDS)}")
        view = rendering_pb2.SliceView(
            case_id=request.path_params["case_id"],
            plane=PLANES[plane],
            index=index,
            window=WINDOWS[window],
            heatmap_organ=organ_to_proto(heat) if heat else NO_ORGAN,
        )
        reply = await run_in_threadpool(clients.of(session).render_slice, view, role)
        return Response(reply.png, media_type="image/png", headers={"cache-control": "private, max-age=3600"})

    async def regions(request: Request) -> Response:
        session = session_of(request)
        role = acting_role(request, session)
        case_id, version = request.path_params["case_id"], request.path_params["version"]

        def find() -> list[dict]:
            client = clients.of(session)
            volume = label_volume(client, role, case_id, version)
            info = [v for v in client.label_versions(case_id, role=role) if v.label_version == version]
            if not info or info[0].source != common_pb2.LABEL_SOURCE_AI:
                return []
            scores = client.scores(case_id, info[0].model_set, role=role)
            found = []
            for r in scores.regions:
                if r.organ not in ORGANS:
                    continue
                lo, hi = volume.ras_box(list(r.box.min_mm), list(r.box.max_mm))
                found.append(
                    {
                        "organ": ORGANS[r.organ],
                        "peak_heat": r.peak_heat,
                        "volume_ml": r.volume_ml,
                        "lo": lo,
                        "hi": hi,
                        "min_mm": list(r.box.min_mm),
                        "max_mm": list(r.box.max_mm),
                    }
                )
            return found  # most salient first, as scoring ranks them

        return JSONResponse({"regions": await run_in_threadpool(find)})

    def edits_of(body: dict[str, Any]) -> tuple[list[int], list[int]]:
        voxels, labels = body.get("voxels", []), body.get("labels", [])
        if not isinstance(voxels, list) or not isinstance(labels, list):
            raise HTTPException(400, "voxels and labels must be lists of integers")
        if not all(type(v) is int for v in voxels) or not all(type(v) is int for v in labels):
            raise HTTPException(400, "voxels and labels must be lists of integers")
        return voxels, labels

    def held_lease(client: Client, lease_id: str) -> tracking_pb2.GetLeaseResponse:
        held = client.get_lease(lease_id)
        if not held.active:
            raise InvalidInput(f"lease {lease_id} has ended (released, expired or already revised); take the next case")
        return held

    def edited(client: Client, lease_id: str, voxels: list[int], labels: list[int]):
        """The lease, the label version it started from, and that version with the page's edits."""
        held = held_lease(client, lease_id)
        base = label_volume(client, "annotator", held.lease.case_id, held.label_version)
        return held, base, apply_edits(base, voxels, labels, settings.max_edit_voxels)

    async def suggest_tags(request: Request) -> Response:
        """The error tags the painted change suggests, organ by organ, before anything is stored:
        the same taxonomy and rules tracking applies (atlasloop.method.error_taxonomy), against
        the case's AI label, for the annotator to confirm or change."""
        session = session_of(request, "annotator")
        voxels, labels = edits_of(await body_json(request))
        lease_id = request.path_params["lease_id"]

        def suggest() -> dict:
            client = clients.of(session)
            held, base, revised = edited(client, lease_id, voxels, labels)
            case_id = held.lease.case_id
            versions = client.label_versions(case_id, role="annotator")
            ai_versions = [v.label_version for v in versions if v.source == common_pb2.LABEL_SOURCE_AI]
            if held.label_version in ai_versions or not ai_versions:
                ai = base.stored
            else:  # a revision of a person's label: tracking tags against the AI label all the same
                ai = label_volume(client, "annotator", case_id, ai_versions[-1]).stored
            return {
                "organs": [
                    {
                        "organ": d.organ,
                        "suggested": d.suggested,
                        "voxels_added": d.voxels_added,
                        "voxels_removed": d.voxels_removed,
                    }
                    for d in diff_volumes(ai, revised)
                    if d.voxels_added or d.voxels_removed
                ],
                "taxonomy": sorted(AI_TAGS),
            }

        return JSONResponse(await run_in_threadpool(suggest))

    def confirmed_tags(values: Any) -> list[common_pb2.OrganErrorTag]:
        """The tags the annotator confirmed or chose ({organ, tag}); tracking checks them again."""
        if not isinstance(values, list) or len(values) > 200:
            raise HTTPException(400, "tags must be a list of at most 200 {organ, tag}")
        tags = []
        for t in values:
            if not isinstance(t, dict) or not _one_of(t.get("organ"), ORGAN_IDS) or not _one_of(t.get("tag"), AI_TAGS):
                raise HTTPException(400, f"a tag names an organ and one of {', '.join(sorted(AI_TAGS))}")
            tags.append(common_pb2.OrganErrorTag(organ=organ_to_proto(t["organ"]), tag=ErrorTag(t["tag"]).to_proto()))
        return tags

    async def revise(request: Request) -> Response:
        session = session_of(request, "annotator")
        body = await body_json(request)
        voxels, labels = edits_of(body)
        seconds, note = body.get("seconds"), body.get("note", "")
        if not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_SECONDS:
            raise HTTPException(400, f"seconds must be the time the page measured, 0..{MAX_SECONDS:.0f}")
        if not isinstance(note, str) or len(note) > 2000:
            raise HTTPException(400, "note must be text of at most 2000 characters")
        verdicts = region_verdicts(body.get("verdicts", []))
        tags = confirmed_tags(body.get("tags", []))
        lease_id = request.path_params["lease_id"]

        def submit() -> dict:
            client = clients.of(session)
            _held, base, revised = edited(client, lease_id, voxels, labels)
            organs = changed_organs(base.stored.array, revised.array)
            if not organs:
                raise InvalidInput("nothing was changed: paint or erase before submitting")
            reply = client.submit_revision(
                lease_id,
                revised,
                [organ_to_proto(o) for o in organs],
                tags,
                float(seconds),
                note or "revised in the web page",
                verdicts,
            )
            return {
                "revision_id": reply.revision_id,
                "label_version": reply.label_version,
                "organs": organs,
                "suggested_tags": [
                    {"organ": organ_from_proto(t.organ), "tag": ErrorTag.from_proto(t.tag).value}
                    for t in reply.suggested_tags
                ],
            }

        return JSONResponse(await run_in_threadpool(submit))

    def region_verdicts(values: Any) -> list[tracking_pb2.RegionVerdict]:
        """The page's verdicts ({organ, min_mm, max_mm, verdict}) as tracking records them; tracking
        checks the boxes and the count again."""
        if not isinstance(values, list) or len(values) > 1000:
            raise HTTPException(400, "verdicts must be a list of at most 1000 region verdicts")
        verdicts = []
        for v in values:
            if (
                not isinstance(v, dict)
                or not RegionVerdictKind.has(v.get("verdict"))
                or not _one_of(v.get("organ"), ORGAN_IDS)
            ):
                raise HTTPException(400, f"a verdict names an organ and one of {', '.join(RegionVerdictKind)}")
            corners = [v.get("min_mm"), v.get("max_mm")]
            if not all(isinstance(c, list) and len(c) == 3 and all(map(_is_number, c)) for c in corners):
                raise HTTPException(400, "a verdict's region box needs min_mm and max_mm, three numbers each")
            verdicts.append(
                tracking_pb2.RegionVerdict(
                    organ=organ_to_proto(v["organ"]),
                    box=common_pb2.BoundingBox(min_mm=v["min_mm"], max_mm=v["max_mm"]),
                    verdict=RegionVerdictKind(v["verdict"]).to_proto(),
                )
            )
        return verdicts

    # ---- the coordinator ----

    async def overview(request: Request) -> Response:
        """Rounds, queue depth, per-organ quality, minutes, tags, attention's precision from the
        annotators' verdicts, and the model runs with their gate decisions."""
        session = session_of(request)
        role = "admin" if "admin" in session.roles else "reviewer"
        if role not in session.roles:
            raise HTTPException(403, "the coordinator's view needs the reviewer or admin role")

        def gather() -> dict:
            client = clients.of(session)
            stats = client.statistics(role=role)
            states: dict[str, int] = {}
            for case in client.cases(role=role):
                name = common_pb2.CaseState.Name(case.state).removeprefix("CASE_STATE_").lower()
                states[name] = states.get(name, 0) + 1
            rows = [
                {
                    "round": r.round,
                    "organ": organ_from_proto(r.organ),
                    "cases_revised": r.cases_revised,
                    "mean_dice": r.mean_dice,
                    "tags": dict(r.tag_counts),
                    "regions_fixed": r.regions_fixed,
                    "regions_not_an_error": r.regions_not_an_error,
                    "double_reads": r.double_reads,
                    "double_read_dice": r.double_read_dice if r.double_reads else None,
                }
                for r in stats.organs
            ]
            fixed = sum(int(r.regions_fixed) for r in stats.organs)
            judged = fixed + sum(int(r.regions_not_an_error) for r in stats.organs)
            runs = [
                {
                    "run_id": run.run_id,
                    "state": training_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_").lower(),
                    "trigger": run.trigger,
                    "reason": run.reason,
                    "published": run.published_model_set,
                }
                for run in client.runs(role=role)
            ]
            return {
                "cases_by_state": states,
                "organs": rows,
                "minutes_per_round": {str(k): v for k, v in sorted(stats.minutes_per_round.items())},
                "revisions_per_annotator": dict(stats.revisions_per_annotator),
                "attention_precision": {
                    "fixed": fixed,
                    "judged": judged,
                    "precision": fixed / judged if judged else None,
                },
                "runs": runs,
            }

        return JSONResponse(await run_in_threadpool(gather))

    # ---- the reviewer ----

    async def pending(request: Request) -> Response:
        session = session_of(request, "reviewer")
        found = await run_in_threadpool(clients.of(session).revisions, tracking_pb2.REVIEW_STATE_PENDING)
        return JSONResponse(
            {
                "revisions": [
                    {
                        "revision_id": r.revision.revision_id,
                        "case_id": r.revision.case_id,
                        "label_version": r.revision.label_version,
                        "parent_version": r.parent_version,
                        "organs": [organ_from_proto(o) for o in r.revision.organs],
                        "annotator": r.revision.annotator,
                        "minutes": round(r.seconds_spent / 60, 1),
                    }
                    for r in found
                ]
            }
        )

    async def changes(request: Request) -> Response:
        """Where a revision changed its parent: the changed voxels' count and the centre of their
        box (RAS voxel), so the reviewer's view opens on the work."""
        session = session_of(request, "reviewer")
        case_id = request.query_params.get("case_id", "")
        before_version, after_version = request.query_params.get("from", ""), request.query_params.get("to", "")
        if not (case_id and before_version and after_version):
            raise HTTPException(400, "give case_id, from and to")

        def compare() -> dict:
            client = clients.of(session)
            before = label_volume(client, "reviewer", case_id, before_version)
            after = label_volume(client, "reviewer", case_id, after_version)
            if before.ras.array.shape != after.ras.array.shape:
                raise InvalidInput("the two label versions are on different grids")
            changed = np.argwhere(before.ras.array != after.ras.array)
            if not len(changed):
                return {"voxels": 0, "centre": None}
            centre = ((changed.min(axis=0) + changed.max(axis=0)) // 2).tolist()
            return {"voxels": len(changed), "centre": centre}

        return JSONResponse(await run_in_threadpool(compare))

    async def review(request: Request) -> Response:
        session = session_of(request, "reviewer")
        body = await body_json(request)
        approve, reason = body.get("approve"), body.get("reason", "")
        if not isinstance(approve, bool) or not isinstance(reason, str) or len(reason) > 2000:
            raise HTTPException(400, "give approve (true or false) and a reason of at most 2000 characters")
        reply = await run_in_threadpool(clients.of(session).review, request.path_params["revision_id"], approve, reason)
        return JSONResponse({"state": common_pb2.CaseState.Name(reply.state).removeprefix("CASE_STATE_").lower()})

    async def healthz(request: Request) -> Response:
        """Kubelet's probes: the process serves requests (the services have health of their own)."""
        return JSONResponse({"ok": True}, headers={"cache-control": "no-store"})

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def failed(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
            status = HTTP_OF.get(exc.code(), 502)
            return JSONResponse({"error": f"{exc.code().name}: {exc.details()}"}, status_code=status)
        if isinstance(exc, InvalidInput):
            return JSONResponse({"error": str(exc)}, status_code=400)
        if isinstance(exc, AtlasError):
            return JSONResponse({"error": f"{exc.code.name}: {exc}"}, status_code=HTTP_OF.get(exc.code, 500))
        log.exception("unexpected failure", exc_info=exc)
        return JSONResponse({"error": "internal error"}, status_code=500)

    case = "/api/cases/{case_id}"
    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/api/session", sign_in, methods=["POST"]),
        Route("/api/session", sign_out, methods=["DELETE"]),
        Route("/api/me", me),
        Route("/api/config", config),
        Route("/api/oidc/login", oidc_login),
        Route("/api/oidc/callback", oidc_callback),
        Route("/api/schema", schema),
        Route("/api/next", next_case, methods=["POST"]),
        Route("/api/leases/{lease_id}", lease),
        Route("/api/leases/{lease_id}/tags", suggest_tags, methods=["POST"]),
        Route("/api/leases/{lease_id}/revision", revise, methods=["POST"]),
        Route(case + "/image", image),
        Route(case + "/versions/{version}/grid", grid),
        Route(case + "/versions/{version}/labels", label_slice),
        Route(case + "/versions/{version}/regions", regions),
        Route("/api/revisions", pending),
        Route("/api/changes", changes),
        Route("/api/overview", overview),
        Route("/api/revisions/{revision_id}/review", review, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        warmers.shutdown(wait=False, cancel_futures=True)
        clients.close()

    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: failed, grpc.RpcError: failed, AtlasError: failed, Exception: failed},
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
    )


def _lease(reply: tracking_pb2.NextCaseResponse | tracking_pb2.GetLeaseResponse, active: bool) -> dict:
    return {
        "lease_id": reply.lease.lease_id,
        "case_id": reply.lease.case_id,
        "label_version": reply.label_version,
        "organs": [organ_from_proto(o) for o in reply.organs],
        "active": active,
        # a second, independent reading of an approved case, from the AI label: it measures agreement
        "double_read": reply.double_read,
    }
