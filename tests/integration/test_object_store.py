"""A 50 MB object through the real S3 API (SeaweedFS), with checksum and a presigned GET."""

from __future__ import annotations

import hashlib
import io
import urllib.request
from datetime import timedelta

import numpy as np
import pytest

from atlasloop.common.errors import NotFound
from atlasloop.common.objectstore import ObjectStore

pytestmark = pytest.mark.integration


def test_50_mb_round_trip_with_checksum_and_presigned_get(stack):
    store = ObjectStore(stack.s3_settings())
    store.check_bucket()
    data = np.random.default_rng(7).bytes(50 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    stored = store.put_stream("tests/big.bin", io.BytesIO(data), len(data), sha256=digest)
    assert (stored.sha256, stored.size_bytes) == (digest, len(data))  # multipart: 4 parts of 16 MiB
    assert store.stat("tests/big.bin").sha256 == digest
    assert hashlib.sha256(b"".join(store.iter_chunks("tests/big.bin"))).hexdigest() == digest
    url = store.presign_get("tests/big.bin", timedelta(seconds=60))
    with urllib.request.urlopen(url, timeout=60) as response:
        assert hashlib.sha256(response.read()).hexdigest() == digest


def test_presigned_put_then_read(stack):
    store = ObjectStore(stack.s3_settings())
    url = store.presign_put("tests/put.bin", timedelta(seconds=60))
    request = urllib.request.Request(url, data=b"via http", method="PUT")
    with urllib.request.urlopen(request, timeout=30):
        pass
    assert store.get_bytes("tests/put.bin") == b"via http"


def test_missing_object_is_not_found(stack):
    store = ObjectStore(stack.s3_settings())
    with pytest.raises(NotFound):
        store.stat("tests/never-written")
    with pytest.raises(NotFound):
        list(store.iter_chunks("tests/never-written"))


def test_a_bucket_keeps_the_label_schema_it_was_created_with(stack):
    """A fresh bucket takes the first schema offered and refuses another afterwards, leaving the
    recorded one as it was (every service's bucket check does this at its start)."""
    from atlasloop.common.layout import LABEL_SCHEMA_KEY
    from atlasloop.common.project_schema import SchemaMismatch, agree_on_schema, stored_schema
    from atlasloop.imaging.schema import BUILTIN

    store = ObjectStore(stack.s3_settings(bucket="schema-test"))
    store.check_bucket()
    store.delete(LABEL_SCHEMA_KEY)  # a bucket no service has started on
    assert stored_schema(store) is None
    agree_on_schema(store, BUILTIN["abdomenatlas-1.1"])
    agree_on_schema(store, BUILTIN["abdomenatlas-1.1"])  # the same one again: fine
    with pytest.raises(SchemaMismatch, match=r"'abdomenatlas-1\.1'.*configured with 'abdomenatlas-1\.0'"):
        agree_on_schema(store, BUILTIN["abdomenatlas-1.0"])
    assert stored_schema(store) == BUILTIN["abdomenatlas-1.1"]
