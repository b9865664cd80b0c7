"""``python -m atlasloop.training``: run the training service until SIGTERM."""

from __future__ import annotations

from atlasloop.common.server import run_service
from atlasloop.training.app import build
from atlasloop.training.settings import TrainingSettings


def main() -> None:
    run_service(build, TrainingSettings())


if __name__ == "__main__":
    main()
