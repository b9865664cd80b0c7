"""``python -m atlasloop.devstack.ray_node ARGS``: ``ray start`` for the local cluster's second node,
kept on loopback.

Ray refuses a second node on one host unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1``, and with it
set rewrites a loopback GCS address to the machine's outward IP, where the head (bound to
127.0.0.1) does not listen. This wrapper lets the second node join while every address stays
127.0.0.1, as the rest of the stack does. Local stack only: on Kubernetes every Ray node is a pod
with its own address, and KubeRay starts them.
"""

from __future__ import annotations

import sys


def main() -> None:
    import ray._private.ray_constants as constants
    import ray._private.services as services
    from ray.scripts.scripts import main as ray_cli

    constants.ENABLE_RAY_CLUSTER = True  # a second node on this host
    services.get_node_ip_address = lambda address=None: "127.0.0.1"  # and it stays on loopback
    sys.argv = ["ray", "start", *sys.argv[1:]]
    ray_cli()


if __name__ == "__main__":
    main()
