"""AtlasLoop's model runtime: architectures, checkpoints, the registry, the ensemble, the bootstrap set.

Depends on ``atlasloop.common``, PyTorch and MONAI; no gRPC server and no Ray, so a Serve replica,
a Ray Train worker, the gate and a workstation script all load and run models the same way.
"""
