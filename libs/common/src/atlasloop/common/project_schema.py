"""The project's label schema, fixed in its bucket at first start.

Every label map, model, attention map and event of a project carries the ids of one schema, so a
process configured with another one (``ATLASLOOP_LABEL_SCHEMA``) must not serve it: its networks
would have the wrong number of outputs and its ids would name other structures. The first service
to reach the bucket writes the schema's canonical JSON; every service's bucket check compares its
own schema with it afterwards and stays not ready, saying why, when they differ.
"""

from __future__ import annotations

import json

from atlasloop.common.layout import LABEL_SCHEMA_KEY
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging.schema import LabelSchema, schema_from_dict


class SchemaMismatch(RuntimeError):
    """The bucket belongs to a project with another label schema."""


def stored_schema(store: ObjectStore) -> LabelSchema | None:
    """The schema the bucket's project was created with; None before any service started."""
    if not store.exists(LABEL_SCHEMA_KEY):
        return None
    return schema_from_dict(json.loads(store.get_bytes(LABEL_SCHEMA_KEY)), f"s3://{store.bucket}/{LABEL_SCHEMA_KEY}")


def agree_on_schema(store: ObjectStore, schema: LabelSchema) -> None:
    """Record ``schema`` as the project's when the bucket has none; refuse when it has another.

    Two first starts racing with different schemas: each reads back what was stored after writing,
    so at most one of them goes on."""
    stored = stored_schema(store)
    if stored is None:
        store.put_bytes(LABEL_SCHEMA_KEY, schema.canonical_json(), "application/json")
        stored = stored_schema(store)
    if stored is None or stored.fingerprint != schema.fingerprint:
        name = stored.name if stored else "none"
        raise SchemaMismatch(
            f"the bucket {store.bucket} holds a project labelled with the schema {name!r}, and this "
            f"process is configured with {schema.name!r} (ATLASLOOP_LABEL_SCHEMA); a project keeps the "
            "schema it was created with: set the same schema in every service, or use another bucket"
        )
