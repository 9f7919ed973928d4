"""Host identity (issue 27 item 1): profiles transfer across hostnames on the same hardware, not across hardware.

The hostname test changes the hostname for real in a new UTS namespace (``unshare --uts``, as root) where the
platform allows it, and patches the hostname lookup otherwise: it always runs one of the two.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import offload_tuner
from offload_tuner import ProfileError, decide, load_profile, set_executor
from offload_tuner.inspection._check import check_profile
from offload_tuner.runtime import _cores, _host
from offload_tuner.runtime._host import host_fingerprint, host_identity, host_mismatches
from offload_tuner.runtime._registry import kernel_key
from offload_tuner.runtime._warn import OffloadTunerWarning
from tests import support
from tests.support import write_profile_json

ROOT = Path(__file__).resolve().parent.parent
WHERE = kernel_key(support.where)
OTHER_HOSTNAME = "offload-tuner-other-box"


def offload_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, OffloadTunerWarning)]


@pytest.fixture
def unstarted_pool():
    """A process pool whose kind decide() reads; nothing is submitted, so no worker ever starts."""
    executor = ProcessPoolExecutor(1)
    yield executor
    executor.shutdown()


def profile_here(tmp_path: Path, **host_changes: object) -> Path:
    """A profile whose host is this one's full fingerprint, with ``host_changes`` applied."""
    return write_profile_json(tmp_path / "p.json", {WHERE: 0}, host={**host_fingerprint(), **host_changes})


def load_and_decide(path: Path) -> tuple[bool, bool, list[str]]:
    """(profile used, decided to offload, warnings) for one load in this process."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        used = load_profile(path) is not None
        offload = decide(support.where, [1]).offload
    return used, offload, offload_warnings(record)


# ---------------------------------------------------------------------------------------- another hostname

NAMESPACE_SCRIPT = """
import json, os, socket, sys, warnings
from concurrent.futures import ProcessPoolExecutor
socket.sethostname(sys.argv[2])
from offload_tuner import decide, load_profile, set_executor
from offload_tuner.runtime._host import host_identity
from tests import support
set_executor(ProcessPoolExecutor(1))  # never started: decide() reads its kind
out = {"nodename": os.uname().nodename, "identity": host_identity()["hostname"]}
for mode in ("hardware", "strict"):
    os.environ["OFFLOAD_TUNER_HOST_CHECK"] = mode
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        used = load_profile(sys.argv[1]) is not None
        out[mode] = [used, decide(support.where, [1]).offload, [str(w.message) for w in record]]
print(json.dumps(out))
"""


def uts_namespace_available() -> bool:
    """Can this process run a child in a new UTS namespace (root, or user namespaces allowed)?"""
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        return False
    probe = subprocess.run([unshare, "--uts", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


def run_in_new_uts_namespace(path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_TUNER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        ["unshare", "--uts", sys.executable, "-c", NAMESPACE_SCRIPT, str(path), OTHER_HOSTNAME],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_with_patched_hostname(path: Path, monkeypatch) -> dict:
    monkeypatch.setattr(_host, "current_hostname", lambda: OTHER_HOSTNAME)
    set_executor(ProcessPoolExecutor(1))
    out: dict = {"nodename": OTHER_HOSTNAME, "identity": host_identity()["hostname"]}
    try:
        for mode in ("hardware", "strict"):
            monkeypatch.setenv("OFFLOAD_TUNER_HOST_CHECK", mode)
            out[mode] = list(load_and_decide(path))
    finally:
        executor = offload_tuner.get_executor()
        set_executor(None)
        if executor is not None:
            executor.shutdown()
    return out


def test_a_profile_calibrated_under_one_hostname_loads_and_decides_under_another(tmp_path, monkeypatch):
    path = profile_here(tmp_path)
    recorded = json.loads(path.read_text())["host"]["hostname"]
    assert recorded != OTHER_HOSTNAME
    if uts_namespace_available():  # the real thing: another hostname for the whole process
        out = run_in_new_uts_namespace(path)
        assert out["nodename"] == OTHER_HOSTNAME and os.uname().nodename == recorded  # ours is untouched
    else:  # no namespace here (not root, user namespaces off): the lookup the check uses is patched
        out = run_with_patched_hostname(path, monkeypatch)
    assert out["identity"] == OTHER_HOSTNAME
    used, offload, messages = out["hardware"]
    assert (used, offload, messages) == (True, True, [])
    # strict compares the hostname too: refused, named, kernels back on their defaults
    used, offload, messages = out["strict"]
    assert (used, offload) == (False, False)
    assert len(messages) == 1 and "hostname" in messages[0] and OTHER_HOSTNAME in messages[0]
    assert "OFFLOAD_TUNER_HOST_CHECK=strict" in messages[0]


@pytest.mark.parametrize(
    ("field", "value"),
    [("cpu_model", "Some Other CPU @ 1.00GHz"), ("usable_cores", 64), ("python_minor", "2.7")],
)
def test_other_hardware_is_refused_naming_the_field_and_the_mode(tmp_path, unstarted_pool, field, value):
    set_executor(unstarted_pool)
    path = profile_here(tmp_path, hostname=OTHER_HOSTNAME, **{field: value})
    used, offload, messages = load_and_decide(path)
    assert (used, offload) == (False, False)
    assert len(messages) == 1 and "another host" in messages[0]
    assert f"{field}: profile has {value!r}" in messages[0] and "hostname" not in messages[0].split("(", 1)[1]
    assert "OFFLOAD_TUNER_HOST_CHECK=hardware compares cpu_model, usable_cores" in messages[0]
    with pytest.raises(ProfileError, match=field):
        load_profile(path, strict=True)
    # the escape hatch in code still works, and OFFLOAD_TUNER_HOST_CHECK=off does the same without code
    assert load_profile(path, check_host=False) is not None
    assert decide(support.where, [1]).offload is True


def test_off_compares_nothing_but_still_validates(tmp_path, monkeypatch, unstarted_pool):
    set_executor(unstarted_pool)
    monkeypatch.setenv("OFFLOAD_TUNER_HOST_CHECK", " OFF ")
    assert load_and_decide(profile_here(tmp_path, cpu_model="Other", usable_cores=64))[:2] == (True, True)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"schema": 3, "host": {}, "kernels": {WHERE: {"threshold": -1}}}))
    with pytest.raises(ProfileError, match="threshold"):
        load_profile(broken, strict=True)


def test_an_invalid_mode_warns_once_naming_the_variable_and_values_then_checks_hardware(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFLOAD_TUNER_HOST_CHECK", "loose")
    other = profile_here(tmp_path, cpu_model="Other")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert load_profile(other) is None  # hardware: the CPU differs
        assert load_profile(profile_here(tmp_path, hostname=OTHER_HOSTNAME)) is not None  # hardware: host ignored
    messages = offload_warnings(record)
    about_mode = [m for m in messages if "'loose'" in m]
    assert len(about_mode) == 1
    assert "OFFLOAD_TUNER_HOST_CHECK" in about_mode[0] and "hardware, strict, off" in about_mode[0]
    assert any("cpu_model" in m and "OFFLOAD_TUNER_HOST_CHECK=hardware" in m for m in messages)


def test_an_older_profile_compares_its_logical_cores_and_says_so(tmp_path):
    current = host_identity()
    older = {k: v for k, v in host_fingerprint().items() if k != "usable_cores"}
    assert host_mismatches({**older, "logical_cores": current["usable_cores"]}) == []
    problems = host_mismatches({**older, "logical_cores": current["usable_cores"] + 62})
    assert len(problems) == 1 and problems[0].startswith("usable_cores: profile has")
    assert "logical_cores" in problems[0] and f"this host {current['usable_cores']}" in problems[0]
    # the recorded usable_cores wins over logical_cores when both are there
    assert host_mismatches({**older, "logical_cores": 999, "usable_cores": current["usable_cores"]}) == []


def test_check_names_the_fields_that_differ_and_the_mode(tmp_path, monkeypatch):
    path = profile_here(tmp_path, hostname=OTHER_HOSTNAME, cpu_model="Other CPU")
    problems = [p for p in check_profile(path) if p.startswith("host differs")]
    assert len(problems) == 1 and "cpu_model" in problems[0] and "OFFLOAD_TUNER_HOST_CHECK=hardware" in problems[0]
    monkeypatch.setenv("OFFLOAD_TUNER_HOST_CHECK", "strict")
    problems = [p for p in check_profile(path) if p.startswith("host differs")]
    assert sorted(p.split(":")[1].strip() for p in problems) == ["cpu_model", "hostname"]
    monkeypatch.setenv("OFFLOAD_TUNER_HOST_CHECK", "off")
    assert [p for p in check_profile(path) if p.startswith("host differs")] == []


# ------------------------------------------------------------------------------------------- usable cores


def test_the_fingerprint_records_usable_cores_and_keeps_logical_cores(monkeypatch):
    monkeypatch.setattr(_cores, "usable_cores", lambda: 3)
    fingerprint = host_fingerprint()
    assert fingerprint["usable_cores"] == 3 and host_identity()["usable_cores"] == 3
    assert fingerprint["logical_cores"] == (os.cpu_count() or 1)
    assert host_mismatches({**fingerprint, "usable_cores": 4}) != []


def test_one_function_counts_cores_in_the_package():
    """Pool sizing, calibration and the profile all go through _cores.usable_cores(); the only other call reading
    the OS's count is the fingerprint's logical_cores, recorded for people."""
    package = ROOT / "offload_tuner"
    calls = [
        f"{path.relative_to(package)}:{node.lineno} {node.func.attr}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "_cores.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("cpu_count", "sched_getaffinity", "process_cpu_count")
    ]
    assert [c.split(":")[0] + " " + c.split(" ")[1] for c in calls] == ["runtime/_host.py cpu_count"], calls
    assert (
        "logical_cores"
        in (package / calls[0].split(":")[0]).read_text().splitlines()[int(calls[0].split(":")[1].split()[0]) - 1]
    )


def test_a_profile_shipped_under_the_calibrating_hosts_name_is_found_in_a_new_container(
    tmp_path, monkeypatch, unstarted_pool
):
    """The default location is named after the host; a container's hostname changes on every deploy, so where no
    profile bears this host's name the newest one beside it is read, and the identity check decides."""
    monkeypatch.delenv("OFFLOAD_TUNER_PROFILE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    profiles = offload_tuner.default_profile_path("build-host").parent
    profiles.mkdir(parents=True)
    older = profile_here(tmp_path)
    shipped = older.rename(profiles / "build-host.json")
    stale = write_profile_json(profiles / "retired-host.json", {WHERE: None}, host=host_fingerprint())
    os.utime(stale, (1, 1))  # written long before the shipped one
    monkeypatch.setattr(_host, "current_hostname", lambda: "pod-7f9c")
    from offload_tuner.runtime import _profile

    monkeypatch.setattr(_profile, "current_hostname", lambda: "pod-7f9c")
    assert _host.configured_profile_path() == shipped
    # a newer profile from other hardware beside it is passed over: the newest that this host's check accepts wins
    other = write_profile_json(
        profiles / "gpu-box.json", {WHERE: None}, host={**host_fingerprint(), "usable_cores": 64}
    )
    assert other.stat().st_mtime >= shipped.stat().st_mtime
    assert _host.configured_profile_path() == shipped
    other.unlink()
    set_executor(unstarted_pool)
    used, offload, messages = load_and_decide(shipped)
    assert (used, offload, messages) == (True, True, [])
    # a profile named after this host wins over a newer one beside it
    mine = write_profile_json(profiles / "pod-7f9c.json", {WHERE: None}, host=host_fingerprint())
    os.utime(mine, (1, 1))
    assert _host.configured_profile_path() == mine


def test_no_profile_beside_the_default_location_keeps_the_default_path(tmp_path, monkeypatch):
    monkeypatch.delenv("OFFLOAD_TUNER_PROFILE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "nothing-here"))

    assert _host.configured_profile_path() == offload_tuner.default_profile_path()


def test_where_no_profile_beside_it_fits_this_host_the_default_path_is_kept(tmp_path, monkeypatch):
    """Another machine's profile is not picked up, so the message stays 'no such file: run calibrate'."""
    monkeypatch.delenv("OFFLOAD_TUNER_PROFILE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    profiles = offload_tuner.default_profile_path().parent
    profiles.mkdir(parents=True)
    write_profile_json(profiles / "elsewhere.json", {WHERE: 0}, host={**host_fingerprint(), "cpu_model": "Other CPU"})
    (profiles / "notes.json").write_text("[1, 2")  # not a profile at all: passed over
    assert _host.configured_profile_path() == offload_tuner.default_profile_path()
