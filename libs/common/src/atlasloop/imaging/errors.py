"""The imaging core's refusals: one exception that names the file and the problem."""

from __future__ import annotations

from pathlib import Path

from atlasloop.common.errors import InvalidInput


class ImageError(InvalidInput):
    """An image or label file that cannot be used, with the file named in the message."""

    def __init__(self, source: str | Path | None, problem: str) -> None:
        self.source = str(source) if source is not None else "<memory>"
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")
