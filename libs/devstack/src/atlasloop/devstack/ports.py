"""Every port the local stack listens on, all on 127.0.0.1.

``Ports()`` is what ``make up`` uses; :meth:`Ports.for_tests` moves every port (including the ones
SeaweedFS and Ray derive internally) so the integration tests can run beside a developer's stack.
Test ports all lie below Linux's ephemeral range (32768-60999): there, any outgoing loopback
connection (Ray makes many) can hold a port for a moment, and a server binding it then fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from atlasloop.common.service_map import DEFAULT_PORTS, SERVICES

SLOTS = 7


@dataclass(frozen=True)
class Ports:
    s3: int = 8333
    s3_https: int = 8334  # only when the stack is given a certificate (Stack's s3_tls)
    s3_master: int = 9333
    s3_volume: int = 8080
    s3_filer: int = 8888
    s3_admin: int = 23646
    s3_admin_grpc: int = 24646
    kafka: int = 19092
    machine_postgres: int = 5432
    private_postgres: int = 25432
    ray: int = 6390
    ray_client: int = 10001
    ray_agent: int = 52365
    ray_workers: tuple[int, int] = (20000, 20499)
    ray_dashboard: int = 8265
    ray_node_agent: int = 52366  # the second Ray node's dashboard agent
    ray_node_workers: tuple[int, int] = (20500, 20999)
    serve_http: int = 8000
    ray_metrics: int = 8090  # each Ray node's Prometheus export
    ray_node_metrics: int = 8091
    orthanc: int = 8042  # the PACS's HTTP (REST and DICOMweb); it serves no DIMSE port here
    web: int = 8790  # the web page (atlasloop.web)
    services: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    metrics: dict[str, int] = field(default_factory=lambda: {name: 9101 + i for i, name in enumerate(SERVICES)})

    @classmethod
    def for_demo(cls) -> Ports:
        """The demo's own set (test slot 3): ``make demo`` runs beside ``make up`` and the tests."""
        return cls.for_tests(3)

    @classmethod
    def for_tests(cls, slot: int = 0) -> Ports:
        """Port set ``slot`` (0-6) for tests: clear of the default set and of every other slot
        (``tests/test_ports.py`` checks it). Ray's worker ranges lie in 11000-17999, where nothing
        else listens."""
        if not 0 <= slot < SLOTS:
            raise ValueError(f"slot must be 0..{SLOTS - 1}")
        k = 100 * (slot + 1)
        return cls(
            s3=8333 + k,
            s3_https=26550 + k,
            s3_master=9333 + k,
            s3_volume=8080 + k,
            s3_filer=8888 + k,
            s3_admin=23646 + k,
            s3_admin_grpc=24646 + k,
            kafka=19092 + k,
            private_postgres=25432 + k,
            ray=6390 + k,
            ray_client=10001 + k,
            ray_agent=31365 + k,
            ray_workers=(11000 + 1000 * slot, 11499 + 1000 * slot),
            ray_dashboard=26200 + k,
            ray_node_agent=29000 + k,
            ray_node_workers=(11500 + 1000 * slot, 11999 + 1000 * slot),
            serve_http=27000 + k,
            ray_metrics=28000 + k,
            ray_node_metrics=28050 + k,
            orthanc=23000 + k,
            web=22000 + k,
            services={name: 30051 + k + i for i, name in enumerate(SERVICES)},
            metrics={name: 32000 + k + i for i, name in enumerate(SERVICES)},
        )
