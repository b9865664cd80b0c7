"""``python -m atlasloop.tracking``: run the tracking service until SIGTERM."""

from __future__ import annotations

from atlasloop.common.server import run_service
from atlasloop.tracking.app import build
from atlasloop.tracking.settings import TrackingSettings


def main() -> None:
    run_service(build, TrackingSettings())


if __name__ == "__main__":
    main()
