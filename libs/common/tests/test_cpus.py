"""usable_cpus: the affinity, capped by a cgroup v2 or v1 CPU quota when there is one."""

from __future__ import annotations

import os

import pytest

from atlasloop.common.cpus import usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


def test_no_cgroup_files_means_the_affinity(tmp_path):
    assert usable_cpus(tmp_path) == AFFINITY


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000", AFFINITY), ("50000 100000", 1), ("100000 100000", 1), ("150000 100000", min(2, AFFINITY))],
)
def test_a_cgroup_v2_quota_caps_it(tmp_path, cpu_max, expected):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert usable_cpus(tmp_path) == expected


@pytest.mark.parametrize(("quota", "expected"), [("-1", AFFINITY), ("20000", 1), ("100000", 1)])
def test_a_cgroup_v1_quota_caps_it(tmp_path, quota, expected):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == expected


def test_an_unreadable_quota_is_ignored(tmp_path):
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert usable_cpus(tmp_path) == AFFINITY
