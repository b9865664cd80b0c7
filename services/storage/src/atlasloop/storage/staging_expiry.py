"""Staged uploads expire: an S3 lifecycle rule on ``staging/`` removes what no import or label
write consumed (an abandoned upload, a presigned PUT never used) and, later than any retry would
come, the uploads' receipts. The rule is merged into the bucket's configuration by its id, so an
operator's own rules stay."""

from __future__ import annotations

import logging

from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from atlasloop.common import layout
from atlasloop.common.objectstore import ObjectStore

log = logging.getLogger(__name__)
RULE_ID = "atlasloop-staging-expiry"


def expire_staging(store: ObjectStore, days: int) -> None:
    """Make ``staging/`` objects expire ``days`` after they were written (0 removes the rule)."""
    try:
        current = store.client.get_bucket_lifecycle(store.bucket)
    except S3Error as exc:
        if exc.code != "NoSuchLifecycleConfiguration":
            raise
        current = None
    rules = [r for r in (current.rules if current else []) if r.rule_id != RULE_ID]
    if days:
        rules.append(
            Rule(ENABLED, rule_filter=Filter(prefix=layout.STAGING), rule_id=RULE_ID, expiration=Expiration(days=days))
        )
    if rules:
        store.client.set_bucket_lifecycle(store.bucket, LifecycleConfig(rules))
    elif current is not None:
        store.client.delete_bucket_lifecycle(store.bucket)
    log.info("staging expiry set", extra={"days": days, "other_rules": len(rules) - bool(days)})
