"""``python -m atlasloop.rendering``: run the rendering service until SIGTERM."""

from __future__ import annotations

from atlasloop.common.server import run_service
from atlasloop.rendering.app import build
from atlasloop.rendering.settings import RenderingSettings


def main() -> None:
    run_service(build, RenderingSettings())


if __name__ == "__main__":
    main()
