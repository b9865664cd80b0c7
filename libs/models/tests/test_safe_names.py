"""Names from imported models' files resolve only to the classes the allowed packages define: a
path that starts inside a package and walks out of it through the module's own imports (to
``torch.hub.load``, which runs a local hubconf.py) is refused, and so is anything not a class of
the expected kind."""

from __future__ import annotations

import pytest
import torch

from atlasloop.common.errors import InvalidInput
from atlasloop.models.safe_names import locate_class


def test_the_classes_a_package_defines_resolve():
    found = locate_class("torch.nn.LeakyReLU", ("torch.nn",), torch.nn.Module, "block")
    assert found is torch.nn.LeakyReLU
    net = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    assert locate_class(net, ("dynamic_network_architectures.architectures",), torch.nn.Module, "network").__name__ == (
        "PlainConvUNet"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("dynamic_network_architectures.architectures.unet.torch.hub.load", "not a Module class defined in"),
        ("torch.nn.modules.conv.math.floor", "not a Module class defined in"),
        ("torch.nn.functional.relu", "not a Module class defined in"),
        ("os.system", "is not from"),
        ("torch.nn.Conv3d; import os", "is not from"),
        ("torch.nnx.Conv3d", "is not from"),
    ],
)
def test_a_name_that_walks_out_or_is_no_class_is_refused(name, reason):
    with pytest.raises(InvalidInput, match=reason):
        locate_class(name, ("torch.nn", "dynamic_network_architectures.architectures"), torch.nn.Module, "x")
