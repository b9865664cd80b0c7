"""Names from an imported model's files that resolve to code, resolved so that they cannot reach
anything but the classes they are meant to name.

nnU-Net plans name their network class and its building blocks by dotted path, and MONAI bundles
name every component by ``_target_``; both frameworks import whatever the name denotes. A prefix
check on the text is not enough: ``dynamic_network_architectures.architectures.unet.torch.hub.load``
starts with the network package and is ``torch.hub.load``, reached through the module's own
imports (and ``torch.hub.load`` runs a local ``hubconf.py``). Here a name must be a dotted path
inside an allowed package and denote a class that the allowed package itself defines (its
``__module__``), of the expected base class.
"""

from __future__ import annotations

import inspect
import pydoc
import re

from atlasloop.common.errors import InvalidInput

DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _inside(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def locate_class(name: str, packages: tuple[str, ...], base: type, what: str) -> type:
    """The class ``name`` denotes, when it is defined in one of ``packages`` and derives from
    ``base``; anything else is refused with the reason (nothing outside ``packages`` is imported)."""
    allowed = " or ".join(packages)
    if not DOTTED.fullmatch(name) or not _inside(name.rsplit(".", 1)[0], packages):
        raise InvalidInput(f"{what} {name!r} is not from {allowed}")
    try:
        found = pydoc.locate(name)
    except pydoc.ErrorDuringImport as exc:
        raise InvalidInput(f"{what} {name!r} does not import ({getattr(exc.exc, '__name__', 'error')})") from None
    if not inspect.isclass(found) or not _inside(found.__module__, packages) or not issubclass(found, base):
        raise InvalidInput(f"{what} {name!r} is not a {base.__name__} class defined in {allowed}")
    return found
