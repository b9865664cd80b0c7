"""Every port set of the local stack (make up, the demo, each test slot) is clear of every other,
and every port of one set is distinct: stacks run side by side without taking each other's ports."""

from __future__ import annotations

from dataclasses import fields

from atlasloop.devstack.ports import SLOTS, Ports


def _ports(p: Ports) -> list[int]:
    found: list[int] = []
    for f in fields(p):
        value = getattr(p, f.name)
        if f.name == "machine_postgres":
            continue  # the machine's PostgreSQL, shared on purpose
        if isinstance(value, int):
            found.append(value)
        elif isinstance(value, tuple):
            found += list(range(value[0], value[1] + 1))
        elif isinstance(value, dict):
            found += list(value.values())
    return found


def test_port_sets_never_overlap_and_stay_below_the_ephemeral_range():
    sets = {"default": Ports(), **{f"slot {s}": Ports.for_tests(s) for s in range(SLOTS)}}
    owner: dict[int, str] = {}
    for name, ports in sets.items():
        mine = _ports(ports)
        assert len(mine) == len(set(mine)), f"{name} uses a port twice"
        for port in mine:
            assert port not in owner, f"port {port} of {name} is also {owner[port]}'s"
            owner[port] = name
        if name != "default":
            assert max(mine) < 32768, f"{name} reaches into the ephemeral range"
