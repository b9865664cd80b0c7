"""``python -m atlasloop.rendering``: run the rendering service until SIGTERM."""

from __future__ import annotations

from threadpoolctl import threadpool_limits

from atlasloop.common.server import run_service
from atlasloop.rendering.app import build
from atlasloop.rendering.settings import RenderingSettings


def limit_blas(threads: int) -> None:
    """BLAS on ``threads`` threads in this process (0: the library's own choice).

    The renderer draws many small pictures side by side, one per request; BLAS calls in a picture
    are small. OpenBLAS's idle workers spin for a while after each call, so with its default (a
    thread per CPU) a page scrolling at five slices a second kept the rendering process at 0.7 of a
    core, of which 0.5 was one spinning OpenBLAS thread; on one thread the same scrolling costs
    0.16 of a core (``make bench``, web page; ADR 0009's fourth addendum)."""
    if threads:
        threadpool_limits(limits=threads, user_api="blas")


def main() -> None:
    settings = RenderingSettings()
    limit_blas(settings.blas_threads)
    run_service(build, settings)


if __name__ == "__main__":
    main()
