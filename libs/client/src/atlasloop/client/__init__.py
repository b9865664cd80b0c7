"""AtlasLoop's client library: a gRPC client of every service (``Client``), where the services are
(``targets``), and the bearer tokens of a workstation's stack (``tokens``). The command line, the
closed loop and the local stack use it; it imports no service and neither torch nor Ray.
"""

from atlasloop.client.client import Client
from atlasloop.client.targets import targets_from_env, tls_from_env
from atlasloop.client.tokens import TokenFile

__all__ = ["Client", "TokenFile", "targets_from_env", "tls_from_env"]
