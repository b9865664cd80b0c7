"""Who may write which kind of label version, decided from the caller, never from the request.

- ``human``: only tracking, which writes a revision of a lease an annotator holds (people never
  write label versions themselves: they revise through tracking, which records the lease, the
  diff and the review);
- ``ai``: only the inference service (its Serve replicas), the ensemble's pseudo-label;
- ``original``: never through ``WriteLabelVersion``; only an admin's ``ImportCase`` with labels.

The writers are service identities (``Settings.label_writers``: in development the
``<service>:service`` tokens, in production each workload's JWT subject). A request may still name
the source it means; one that differs from what its caller may write is refused, never rewritten.
"""

from __future__ import annotations

from atlasloop.common.auth import Principal
from atlasloop.common.domain import LabelSource, Role
from atlasloop.common.errors import PermissionDenied

PEOPLE_PATH = "human labels enter through tracking's revisions of a held lease"


def source_for(principal: Principal, requested: LabelSource | None, writers: dict[str, list[str]]) -> LabelSource:
    """The source ``principal`` writes; PermissionDenied when it writes none or asked for another."""
    allowed = [LabelSource(kind) for kind, names in writers.items() if principal.name in names]
    if Role.SERVICE not in principal.roles or not allowed:
        raise PermissionDenied(
            f"{principal.name} may not write label versions: {PEOPLE_PATH}, AI labels come from the "
            "inference service, original labels from an admin's import"
        )
    if requested is None:
        if len(allowed) != 1:
            raise PermissionDenied(f"{principal.name} writes {', '.join(allowed)}: name the source")
        return allowed[0]
    if requested not in allowed:
        raise PermissionDenied(f"{principal.name} may not write {requested} label versions (only {', '.join(allowed)})")
    return requested


def check_original_import(principal: Principal) -> None:
    """Labels imported with a case become its ``original`` labels, ground truth for training."""
    if Role.ADMIN not in principal.roles:
        raise PermissionDenied(f"{principal.name} may not import labels: original labels come from an admin's import")
