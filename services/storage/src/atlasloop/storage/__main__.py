"""``python -m atlasloop.storage``: run the storage service until SIGTERM."""

from __future__ import annotations

from atlasloop.common.server import run_service
from atlasloop.storage.app import build
from atlasloop.storage.settings import StorageSettings


def main() -> None:
    run_service(build, StorageSettings())


if __name__ == "__main__":
    main()
