"""Printing listings: aligned columns for people, ``--json`` for scripts, and a next step when a
listing is empty."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def print_table(rows: Sequence[dict[str, Any]], empty: str) -> None:
    """``rows`` as aligned columns (keys of the first row as headers), or ``empty`` when there are none."""
    if not rows:
        print(empty)
        return
    headers = list(rows[0])
    cells = [[_cell(row.get(h, "")) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for line in cells:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def listing(rows: Sequence[dict[str, Any]], as_json: bool, empty: str) -> int:
    if as_json:
        print_json(list(rows))
    else:
        print_table(rows, empty)
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)
