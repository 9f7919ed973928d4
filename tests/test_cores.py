"""Usable cores from fabricated /proc and cgroup trees (v1, v2, hybrid, nested), and the service-process count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from offload_tuner.runtime._cores import (
    affinity_cores,
    cgroup_cpu_limit,
    cores_per_process,
    service_processes,
    usable_cores,
)

NODE = 64  # the affinity mask of a big node: what a container sees without reading its quota


class Host:
    """A fabricated host: /proc/self/{cgroup,mountinfo} and a cgroup filesystem, all under tmp_path."""

    def __init__(self, tmp_path: Path, cgroup: str | None, mountinfo: str | None = None) -> None:
        self.proc = tmp_path / "proc"
        self.cgroup_root = tmp_path / "sys-fs-cgroup"
        (self.proc / "self").mkdir(parents=True)
        self.cgroup_root.mkdir()
        if cgroup is not None:
            (self.proc / "self" / "cgroup").write_text(cgroup)
        if mountinfo is not None:
            (self.proc / "self" / "mountinfo").write_text(mountinfo)

    def write(self, relative: str, content: str | bytes, base: Path | None = None) -> None:
        path = (base or self.cgroup_root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    def cores(self, affinity: int = NODE) -> int:
        return usable_cores(proc_root=self.proc, cgroup_root=self.cgroup_root, affinity=affinity)

    def limit(self) -> float | None:
        cgroup_file = self.proc / "self" / "cgroup"
        mountinfo_file = self.proc / "self" / "mountinfo"
        return cgroup_cpu_limit(
            cgroup_file.read_text(),
            mountinfo_file.read_text() if mountinfo_file.exists() else "",
            cgroup_root=self.cgroup_root,
        )


def mount_line(mount_point: Path, fstype: str, super_options: str, root: str = "/") -> str:
    """One /proc/self/mountinfo line, spaces in the mount point escaped as the kernel does."""
    point = str(mount_point).replace(" ", "\\040")
    return f"40 31 0:38 {root} {point} rw,nosuid,nodev,noexec,relatime shared:9 - {fstype} cgroup rw,{super_options}\n"


# cgroup v2


def test_v2_quota_at_the_root(tmp_path):
    host = Host(tmp_path, "0::/\n")
    host.write("cpu.max", "200000 100000\n")
    assert host.cores() == 2


def test_v2_parent_limit_binds_a_child_set_to_max(tmp_path):
    """The pod slice holds the limit and the container's own cgroup says max: reading only one level misses it."""
    host = Host(tmp_path, "0::/kubepods/pod1/ctr\n")
    host.write("kubepods/pod1/cpu.max", "200000 100000\n")
    host.write("kubepods/pod1/ctr/cpu.max", "max 100000\n")
    assert host.cores() == 2


def test_v2_child_limit_under_a_parent_set_to_max_is_rounded_up(tmp_path):
    host = Host(tmp_path, "0::/kubepods/pod1/ctr\n")
    host.write("kubepods/pod1/cpu.max", "max 100000\n")
    host.write("kubepods/pod1/ctr/cpu.max", "150000 100000\n")
    assert host.limit() == 1.5
    assert host.cores() == 2


def test_v2_the_tightest_quota_on_the_path_counts(tmp_path):
    host = Host(tmp_path, "0::/a/b/c\n")
    host.write("a/cpu.max", "300000 100000\n")
    host.write("a/b/cpu.max", "100000 100000\n")
    host.write("a/b/c/cpu.max", "800000 100000\n")
    assert host.cores() == 1


def test_v2_a_quota_in_a_sibling_cgroup_does_not_count(tmp_path):
    host = Host(tmp_path, "0::/a/mine\n")
    host.write("a/other/cpu.max", "100000 100000\n")
    host.write("a/mine/cpu.max", "400000 100000\n")
    assert host.cores() == 4


def test_v2_max_everywhere_is_unlimited(tmp_path):
    host = Host(tmp_path, "0::/a\n")
    host.write("cpu.max", "max 100000\n")
    host.write("a/cpu.max", "max 100000\n")
    assert host.limit() is None
    assert host.cores() == NODE


def test_v2_empty_cpu_max_is_unlimited_not_a_crash(tmp_path):
    host = Host(tmp_path, "0::/a\n")
    host.write("a/cpu.max", "")
    assert host.cores() == NODE


def test_v2_missing_files_are_unlimited(tmp_path):
    host = Host(tmp_path, "0::/not/created/anywhere\n")
    assert host.limit() is None
    assert host.cores() == NODE


def test_a_fraction_of_one_cpu_still_gives_one_core(tmp_path):
    host = Host(tmp_path, "0::/\n")
    host.write("cpu.max", "20000 100000\n")
    assert host.limit() == pytest.approx(0.2)
    assert host.cores() == 1


def test_v2_mount_point_from_mountinfo(tmp_path):
    """A hybrid host mounts the unified hierarchy elsewhere (/sys/fs/cgroup/unified): mountinfo says where."""
    unified = tmp_path / "unified mount"
    host = Host(tmp_path, "0::/svc\n", mount_line(unified, "cgroup2", "nsdelegate"))
    host.write("svc/cpu.max", "300000 100000\n", base=unified)
    host.write("svc/cpu.max", "100000 100000\n")  # at the default place, which mountinfo overrides
    assert host.cores() == 3


# cgroup v1


def test_v1_quota_and_period(tmp_path):
    host = Host(tmp_path, "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    host.write("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "300000\n")
    host.write("cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    assert host.cores() == 3


def test_v1_quota_minus_one_is_unlimited(tmp_path):
    host = Host(tmp_path, "4:cpu,cpuacct:/docker/abc\n")
    host.write("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n")
    host.write("cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    assert host.cores() == NODE


def test_v1_nested_parent_quota_counts(tmp_path):
    host = Host(tmp_path, "2:cpu:/kubepods/pod1/ctr\n")
    host.write("cpu/kubepods/pod1/cpu.cfs_quota_us", "150000\n")
    host.write("cpu/kubepods/pod1/cpu.cfs_period_us", "100000\n")
    host.write("cpu/kubepods/pod1/ctr/cpu.cfs_quota_us", "-1\n")
    host.write("cpu/kubepods/pod1/ctr/cpu.cfs_period_us", "100000\n")
    assert host.limit() == 1.5
    assert host.cores() == 2


def test_v1_quota_without_a_period_is_unlimited(tmp_path):
    host = Host(tmp_path, "4:cpu,cpuacct:/a\n")
    host.write("cpu,cpuacct/a/cpu.cfs_quota_us", "100000\n")
    assert host.cores() == NODE


def test_v1_only_the_cpu_controllers_hierarchy_is_read(tmp_path):
    """Quota files in the path of another controller's hierarchy are not this process's CPU limit."""
    host = Host(tmp_path, "4:memory:/a\n1:name=systemd:/a\n")
    host.write("cpu,cpuacct/a/cpu.cfs_quota_us", "100000\n")
    host.write("cpu,cpuacct/a/cpu.cfs_period_us", "100000\n")
    assert host.cores() == NODE


def test_v1_mount_from_mountinfo_with_a_container_subtree_as_its_root(tmp_path):
    """Docker without a cgroup namespace: /proc/self/cgroup names /docker/abc, the mount shows only that subtree."""
    mount = tmp_path / "container-cpu"
    mountinfo = mount_line(mount, "cgroup", "cpu,cpuacct", "/docker/abc")
    host = Host(tmp_path, "4:cpu,cpuacct:/docker/abc\n", mountinfo)
    host.write("cpu.cfs_quota_us", "200000\n", base=mount)
    host.write("cpu.cfs_period_us", "100000\n", base=mount)
    assert host.cores() == 2
    # a cgroup below the container's: found at <mount>/inner, not at <mount>/docker/abc/inner
    (host.proc / "self" / "cgroup").write_text("4:cpu,cpuacct:/docker/abc/inner\n")
    host.write("inner/cpu.cfs_quota_us", "100000\n", base=mount)
    host.write("inner/cpu.cfs_period_us", "100000\n", base=mount)
    assert host.cores() == 1


def test_a_cgroup_path_missing_under_the_mount_falls_back_to_the_mount_root(tmp_path):
    """The path names a cgroup outside what the container's mount shows: the mount root is its own cgroup."""
    host = Host(tmp_path, "4:cpu,cpuacct:/docker/abc\n0::/docker/abc\n")
    host.write("cpu,cpuacct/cpu.cfs_quota_us", "200000\n")
    host.write("cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert host.cores() == 2


# hybrid, missing and broken sources


def test_hybrid_v1_and_v2_lines_take_the_tighter_limit(tmp_path):
    unified = tmp_path / "unified"
    mountinfo = mount_line(tmp_path / "v1cpu", "cgroup", "cpu") + mount_line(unified, "cgroup2", "nsdelegate")
    host = Host(tmp_path, "5:cpu:/svc\n0::/svc\n", mountinfo)
    host.write("svc/cpu.cfs_quota_us", "400000\n", base=tmp_path / "v1cpu")
    host.write("svc/cpu.cfs_period_us", "100000\n", base=tmp_path / "v1cpu")
    assert host.cores() == 4
    host.write("svc/cpu.max", "250000 100000\n", base=unified)
    assert host.cores() == 3


def test_missing_proc_self_cgroup_leaves_the_affinity_mask(tmp_path):
    host = Host(tmp_path, None)
    host.write("cpu.max", "100000 100000\n")
    assert host.cores(affinity=6) == 6


def test_an_affinity_mask_smaller_than_the_quota_wins(tmp_path):
    host = Host(tmp_path, "0::/\n")
    host.write("cpu.max", "400000 100000\n")
    assert host.cores(affinity=2) == 2
    assert host.cores(affinity=8) == 4


@pytest.mark.parametrize(
    "content", ["lots of cpus", "max", "0 100000", "100000 0", "-5 100000", "1e5 1e5", b"\xff\xfe\x00"]
)
def test_garbage_in_cpu_max_is_unlimited(tmp_path, content):
    host = Host(tmp_path, "0::/\n")
    host.write("cpu.max", content)
    assert host.cores() == NODE


def test_garbage_in_v1_files_is_unlimited(tmp_path):
    host = Host(tmp_path, "2:cpu:/\n")
    host.write("cpu/cpu.cfs_quota_us", "two cpus\n")
    host.write("cpu/cpu.cfs_period_us", "100000\n")
    assert host.cores() == NODE


def test_garbage_proc_files_are_ignored_but_good_lines_still_count(tmp_path):
    host = Host(tmp_path, "garbage\n::\nno colons here\n0::/svc\n", "not a mountinfo line\n - \n")
    host.write("svc/cpu.max", "100000 100000\n")
    assert host.cores() == 1


def test_unreadable_files_count_as_unlimited():
    def refuse(path: Path) -> str:
        raise PermissionError(path)

    assert cgroup_cpu_limit("0::/\n2:cpu:/\n", "", refuse) is None


def test_the_pure_function_reads_through_the_given_reader():
    files = {"/cg/a/cpu.max": "150000 100000", "/cg/cpu.max": "max 100000"}
    read: list[str] = []

    def reader(path: Path) -> str:
        read.append(str(path))
        if str(path) not in files:
            raise FileNotFoundError(path)
        return files[str(path)]

    assert cgroup_cpu_limit("0::/a\n", "", reader, cgroup_root=Path("/cg")) == 1.5
    assert read == ["/cg/a/cpu.max", "/cg/cpu.max"]


def test_on_this_machine():
    cores = usable_cores()
    assert 1 <= cores <= affinity_cores() <= (os.cpu_count() or 1)


# service processes


def test_service_processes_default_to_one():
    assert service_processes({}) == 1


def test_service_processes_from_our_variable_before_web_concurrency():
    assert service_processes({"WEB_CONCURRENCY": "4"}) == 4
    assert service_processes({"OFFLOAD_TUNER_PROCESSES": "3", "WEB_CONCURRENCY": "4"}) == 3
    assert service_processes({"OFFLOAD_TUNER_PROCESSES": "", "WEB_CONCURRENCY": "4"}) == 4


def test_service_processes_read_the_environment(monkeypatch):
    monkeypatch.setenv("OFFLOAD_TUNER_PROCESSES", "5")
    assert service_processes() == 5
    monkeypatch.delenv("OFFLOAD_TUNER_PROCESSES")
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert service_processes() == 1


@pytest.mark.parametrize("name", ["OFFLOAD_TUNER_PROCESSES", "WEB_CONCURRENCY"])
@pytest.mark.parametrize("value", ["0", "-2", "two", "2.5"])
def test_an_invalid_process_count_names_the_variable_and_value(name, value):
    with pytest.raises(ValueError, match=rf"{name}='{value}'"):
        service_processes({name: value})


def test_an_invalid_stated_count_does_not_fall_back_to_web_concurrency():
    with pytest.raises(ValueError, match="OFFLOAD_TUNER_PROCESSES='x'"):
        service_processes({"OFFLOAD_TUNER_PROCESSES": "x", "WEB_CONCURRENCY": "2"})


@pytest.mark.parametrize(("cores", "processes", "share"), [(2, 2, 1), (8, 3, 2), (1, 4, 1), (64, 1, 64)])
def test_cores_per_process(cores, processes, share):
    assert cores_per_process(cores, processes) == share


def test_cores_per_process_refuses_zero_processes():
    with pytest.raises(ValueError, match="at least 1"):
        cores_per_process(4, 0)
