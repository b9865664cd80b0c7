"""An imported model's classes mapped onto the project's organs (nnU-Net folders, MONAI bundles),
and the bound on what its per-class probabilities may take."""

from __future__ import annotations

from collections.abc import Mapping

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.labels import ALIASES, ORGAN_IDS

# An imported member's per-class probabilities exist at once on the CT's native grid, as their
# frameworks export them (TotalSegmentator's 118 classes on a 512 x 512 x 300 CT: 37 GB). Above this,
# a case is refused with the reason rather than the replica killed for memory.
MAX_PROBABILITY_BYTES = 16 * 1024**3


def check_probability_memory(classes: int, shape: tuple[int, ...], member: str) -> None:
    """Refuse a prediction whose per-class float32 probabilities would exceed the bound."""
    needed = classes * 4
    for n in shape:
        needed *= int(n)
    if needed > MAX_PROBABILITY_BYTES:
        raise InvalidInput(
            f"{member}: {classes} classes on a {' x '.join(str(n) for n in shape)} CT need "
            f"{needed / 1024**3:.1f} GiB of probabilities (at most {MAX_PROBABILITY_BYTES / 1024**3:.0f} GiB); "
            "import the model with fewer classes or predict a cropped CT"
        )


def map_onto_organs(names: Mapping[int, str], explicit: Mapping[str, str] | None, where: str) -> dict[int, str]:
    """Class id -> organ: ``explicit`` (class name -> organ) where given, else the classes named like
    an organ or one of its usual aliases (case, spaces and underscores aside); class 0 (background)
    and unmatched classes are dropped. ``where`` names the model's class list in messages."""
    by_name = {name: index for index, name in names.items()}
    mapping: dict[int, str] = {}
    if explicit:
        for name, organ in explicit.items():
            if name not in by_name:
                raise InvalidInput(f"class {name!r} is not in {where} ({sorted(by_name)})")
            if organ not in ORGAN_IDS:
                raise InvalidInput(f"{organ!r} is not an organ of the project ({sorted(ORGAN_IDS)})")
            mapping[by_name[name]] = organ
    else:
        for index, name in names.items():
            key = name.strip().lower().replace(" ", "_")
            organ = ALIASES.get(key, key)
            if index and organ in ORGAN_IDS:
                mapping[index] = organ
    if not mapping:
        raise InvalidInput(f"none of the classes of {where} ({sorted(by_name)}) maps onto an organ of the project")
    return mapping
