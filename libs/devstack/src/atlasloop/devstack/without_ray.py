"""``python -m atlasloop.devstack.without_ray MODULE``: run a service with Ray unimportable.

The services reach Ray over the network only (ARCHITECTURE.md); the local stack and the tests start
every service through this, so a service that imported Ray would fail at once here rather than
work by accident on one machine and fail in a Kubernetes pod.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

BLOCKED = ("ray",)


class NoRay(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.split(".", 1)[0] in BLOCKED:
            raise ImportError(f"{fullname}: services reach Ray over the network and may not import it")
        return None


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m atlasloop.devstack.without_ray MODULE")
    sys.meta_path.insert(0, NoRay())
    module = sys.argv[1]
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
