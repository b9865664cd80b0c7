"""Every call that leaves the process has a deadline: a gRPC call to another service (or from the
client library), an HTTP call to Ray's head or to the Serve application. A call without one waits
for ever on a peer that accepted the connection and never answers, pinning the thread that made it.

The rule is checked on the source (an AST walk): a method call named like an RPC (``CamelCase``)
made with ``metadata=`` or on a stub, and any ``urlopen``, must pass ``timeout=``. The database
(``connect_timeout_s``, ``statement_timeout_s``), S3 (urllib3 timeouts) and Kafka (delivery and
flush timeouts) are bounded in their clients' settings, each tested where it is built.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _receiver(call: ast.Call) -> str:
    func = call.func
    return ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""


def missing_deadlines(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        keywords = {k.arg for k in node.keywords}
        if "timeout" in keywords or None in keywords:  # None: **kwargs, checked where they are built
            continue
        func = node.func
        method = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        rpc = method[:1].isupper() and ("metadata" in keywords or "stub" in _receiver(node).lower())
        if rpc or method == "urlopen":
            found.append(f"{name}:{node.lineno} {ast.unparse(func)}(...)")
    return found


def test_every_outbound_call_has_a_deadline():
    sources = [p for pattern in ("libs/*/src", "services/*/src") for d in REPO.glob(pattern) for p in d.rglob("*.py")]
    assert len(sources) > 100
    found = [
        hit
        for path in sources
        if not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
        for hit in missing_deadlines(path.read_text(), str(path.relative_to(REPO)))
    ]
    assert not found, "calls without timeout=:\n" + "\n".join(found)


def test_the_check_sees_a_call_without_a_deadline():
    bad = """
stub.GetCase(request, metadata=auth)
self._stub.ListCases(request)
urllib.request.urlopen(url)
stub.GetCase(request, metadata=auth, timeout=5)
stamp.FromDatetime(now)
"""
    assert [hit.split(" ", 1)[1] for hit in missing_deadlines(bad, "x")] == [
        "stub.GetCase(...)",
        "self._stub.ListCases(...)",
        "urllib.request.urlopen(...)",
    ]
