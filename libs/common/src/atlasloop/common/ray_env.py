"""Environment every AtlasLoop process on the Ray cluster (nodes, Serve replicas, jobs) runs with
(see ARCHITECTURE.md). The services themselves never import Ray.

- ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: otherwise Ray rewrites a loopback address to the
  machine's detected IP and then cannot reach a head bound to 127.0.0.1.
- ``RAY_USAGE_STATS_ENABLED=0``: no usage reports.
- ``RAY_AUTH_MODE=disabled``: Ray 2.5x turns token authentication on by itself once a token file
  exists in ``~/.ray/auth_token``, a file shared by every Ray cluster of the user on the machine;
  the local stack, the tests and the demo run separate loopback-only clusters side by side, and a
  token written by one of them locks the others' later clients out. On Kubernetes, KubeRay owns
  the cluster's authentication. Each value is a default: an operator's setting wins.
"""

from __future__ import annotations

import os

RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def apply_ray_env() -> None:
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
