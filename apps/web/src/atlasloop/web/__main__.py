"""``python -m atlasloop.web``: serve the page with uvicorn on the configured host and port."""

from __future__ import annotations

import logging

import uvicorn

from atlasloop.web.app import build
from atlasloop.web.settings import WebSettings


def main() -> None:
    settings = WebSettings()
    logging.basicConfig(level=settings.log_level)
    uvicorn.run(build(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
