"""``python -m atlasloop.scoring``: run the scoring service until SIGTERM."""

from __future__ import annotations

from atlasloop.common.server import run_service
from atlasloop.scoring.app import build
from atlasloop.scoring.settings import ScoringSettings


def main() -> None:
    run_service(build, ScoringSettings())


if __name__ == "__main__":
    main()
