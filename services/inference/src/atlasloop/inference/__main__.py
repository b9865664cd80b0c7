"""``python -m atlasloop.inference``: run the inference service until SIGTERM."""

from __future__ import annotations

from atlasloop.common.server import run_service
from atlasloop.inference.app import build
from atlasloop.inference.settings import InferenceSettings


def main() -> None:
    run_service(build, InferenceSettings())


if __name__ == "__main__":
    main()
