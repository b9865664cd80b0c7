"""AtlasLoop shared library: what every service uses.

Settings, JSON logging, the gRPC server bootstrap (auth and error interceptors, health,
reflection), readiness checks, the Kafka event producer and consumer, the object-store client,
and the generated protobuf stubs (``atlasloop.<domain>.v1``). The imaging core joins it later.
"""

__version__ = "0.1.0"
