"""All-or-nothing groups of object writes: if a later write fails, the earlier ones are removed."""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

from atlasloop.common.objectstore import ObjectStore, StoredObject

log = logging.getLogger(__name__)


class WriteGroup:
    """Records each key written; on an exception inside the ``with`` block, deletes them all."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self.written: list[str] = []

    def __enter__(self) -> WriteGroup:
        return self

    def put_file(self, key: str, path: Path) -> StoredObject:
        self.written.append(key)
        return self._store.put_file(key, path)

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        self.written.append(key)
        return self._store.put_bytes(key, data)

    def put_json(self, key: str, value: object) -> StoredObject:
        self.written.append(key)
        return self._store.put_json(key, value)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            return
        for key in reversed(self.written):
            try:
                self._store.delete(key)
            except Exception:
                log.exception("could not remove a partial object", extra={"key": key})
