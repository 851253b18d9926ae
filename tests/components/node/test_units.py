"""systemd units: the shipped drop-ins and overlay unit, and the cAdvisor unit under podman, each
verified by systemd-analyze."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.facts import CADVISOR_PORT
from components.node.cloud_init import render_user_data
from components.node.etcd_backup import (
    BACKUP_ENV,
    BACKUP_PROGRAM,
    BACKUP_SERVICE,
    BACKUP_UNIT,
    on_calendar,
    render_backup_timer,
)
from components.node.formats import SHIPPED_DIR, shipped
from components.node.pod_network import NODE_SCRIPT
from components.node.units import (
    CADVISOR_UNIT_PATH,
    CONTROL_PLANE_UNITS,
    OVERLAY_UNIT,
    WORKER_UNITS,
    dropin_path,
    render_cadvisor_unit,
    render_dropin,
)
from components.pins import CADVISOR_IMAGE, CADVISOR_VERSION
from tests.components.node.shapes import layout_of
from tools.testing.node_root import user_data_files


def _cadvisor_argv() -> list[str]:
    """The unit's ExecStart as systemd reads it: continuation lines joined, then split on blanks."""
    unit = render_cadvisor_unit().replace("\\\n", " ")
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", unit, re.MULTILINE)
    return exec_start.split()


def test_cadvisor_is_rendered_for_every_node_only_when_enabled() -> None:
    off, on = layout_of(master_count=3), layout_of(master_count=3, enable_cadvisor=True)
    for node in off.nodes:
        text = render_user_data(off, node)
        assert "cadvisor" not in text.lower() and "podman" not in text, node.name
    for node in on.nodes:
        text = render_user_data(on, node)
        config = yaml.safe_load(text)
        units = user_data_files(text)
        assert units[CADVISOR_UNIT_PATH][0] == render_cadvisor_unit(), node.name
        assert "podman" in config["packages"]
        # started now and at every boot, without holding up the rest of the bootstrap
        assert config["runcmd"][-1] == ["systemctl", "enable", "--now", "--no-block", "cadvisor.service"]
        assert "WantedBy=multi-user.target" in units[CADVISOR_UNIT_PATH][0]


def test_enabling_cadvisor_adds_only_its_unit_package_and_start() -> None:
    """The disabled rendering is the enabled one minus the three cAdvisor parts: nothing else moves."""
    off, on = layout_of(), layout_of(enable_cadvisor=True)
    for node_off, node_on in zip(off.nodes, on.nodes, strict=True):
        disabled = yaml.safe_load(render_user_data(off, node_off))
        enabled = yaml.safe_load(render_user_data(on, node_on))
        enabled["packages"].remove("podman")
        enabled["write_files"] = [f for f in enabled["write_files"] if f["path"] != CADVISOR_UNIT_PATH]
        enabled["runcmd"].pop()
        assert enabled == disabled, node_on.name


def test_cadvisor_runs_the_pinned_upstream_image_on_4194() -> None:
    argv = _cadvisor_argv()
    assert argv[:2] == ["/usr/bin/podman", "run"]
    images = [a for a in argv if a.startswith("gcr.io/")]
    assert images == [CADVISOR_IMAGE]
    pinned = re.fullmatch(r"gcr\.io/cadvisor/cadvisor:(v\d+\.\d+\.\d+)@sha256:[0-9a-f]{64}", CADVISOR_IMAGE)
    assert pinned and pinned.group(1) == CADVISOR_VERSION, "pinned by release tag and digest, never latest"
    image_at = argv.index(CADVISOR_IMAGE)
    # podman options before the image, cAdvisor's own flags after it
    assert argv[image_at + 1:] == ["--port=4194"]
    assert "--publish=4194:4194" in argv[:image_at]
    assert CADVISOR_PORT == 4194, "the seed's port, and the one the security groups open"
    assert f"cAdvisor {CADVISOR_VERSION} on port 4194" in render_cadvisor_unit()


def test_cadvisor_mounts_only_what_it_reads_and_read_only() -> None:
    argv = _cadvisor_argv()
    volumes = [a.removeprefix("--volume=") for a in argv if a.startswith(("--volume", "-v", "--mount"))]
    assert volumes == ["/:/rootfs:ro", "/sys:/sys:ro", "/dev/disk:/dev/disk:ro"]
    assert all(v.endswith(":ro") for v in volumes)
    # No container-runtime socket: CRI-O's socket is the whole CRI API (root on the node).
    assert not any(v.startswith(("/var/run", "/run", "/var/lib/containers")) for v in volumes)


def test_cadvisor_runs_with_the_least_privilege_it_allows() -> None:
    argv = _cadvisor_argv()
    options = argv[2:argv.index(CADVISOR_IMAGE)]
    assert "--user=65534:65534" in options, "cAdvisor runs as nobody, not as root"
    assert "--cap-drop=all" in options and not any(o.startswith("--cap-add") for o in options)
    assert "--security-opt=no-new-privileges" in options
    assert "--read-only" in options
    for forbidden in ("--privileged", "--network=host", "--net=host", "--pid=host", "--device", "--userns=host",
                      "--ipc=host", "--security-opt=seccomp=unconfined"):
        assert not any(o.startswith(forbidden) for o in options), forbidden


# podman-run(1) options the unit may use (podman 5 on Fedora 41/42); a typo is an error at boot.
PODMAN_RUN_OPTIONS = {
    "cidfile", "cgroups", "rm", "sdnotify", "replace", "detach", "name", "user", "cap-drop", "security-opt",
    "read-only", "memory", "cpus", "publish", "volume",
}


def test_cadvisor_podman_options_are_podman_run_options() -> None:
    argv = _cadvisor_argv()
    for option in argv[2:argv.index(CADVISOR_IMAGE)]:
        name = re.fullmatch(r"--([a-z-]+)(=.*)?", option)
        assert name and name.group(1) in PODMAN_RUN_OPTIONS, option


SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"


def _systemd_verify(tmp_path: Path, unit_name: str, text: str, *, files: dict[str, str] | None = None,
                    binaries: tuple[str, ...] = ("/usr/bin/podman", "/usr/bin/rm")) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` against a throw-away root holding the host's systemd units (for the
    targets the unit names), stand-ins for the binaries Fedora provides, and `files` (target path ->
    text) such as a packaged unit a drop-in applies to."""
    assert shutil.which(SYSTEMD_ANALYZE), "systemd-analyze is missing: install Debian's systemd"
    root = tmp_path / "root"
    units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir())
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
    for binary in binaries:
        stand_in = root / binary.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
    for target, content in {**(files or {}), f"/etc/systemd/system/{unit_name}": text}.items():
        path = root / target.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", "--generators=no", f"--root={root}",
                           f"/etc/systemd/system/{unit_name}"], capture_output=True, text=True, timeout=60)


def _packaged_unit(unit: str) -> str:
    """A stand-in for the unit Fedora's kubernetes1.NN(-systemd) package ships (what the drop-in resets)."""
    return (f"[Unit]\nDescription={unit}\n\n[Service]\nExecStart=/usr/bin/{unit}\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


@pytest.mark.parametrize("unit", [*CONTROL_PLANE_UNITS, *WORKER_UNITS])
def test_every_drop_in_passes_systemd_analyze_verify_on_its_unit(tmp_path: Path, unit: str) -> None:
    """The shipped drop-in, applied to the package's unit: systemd accepts both together."""
    dropin = dropin_path(unit)
    result = _systemd_verify(
        tmp_path, f"{unit}.service", _packaged_unit(unit),
        files={dropin: render_dropin(unit)},
        binaries=(f"/usr/bin/{unit}",),
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_verify_reads_the_drop_in(tmp_path: Path) -> None:
    """The drop-in check can fail: a bad key in the drop-in, or a binary that is not there, is reported."""
    broken = render_dropin("kubelet").replace("[Service]", "[Service]\nRestart=sometimes")
    result = _systemd_verify(tmp_path, "kubelet.service", _packaged_unit("kubelet"),
                             files={dropin_path("kubelet"): broken}, binaries=())
    assert "sometimes" in result.stderr and "/usr/bin/kubelet" in result.stderr and result.returncode != 0


def test_the_overlay_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = _systemd_verify(tmp_path, "atomic-overlay.service", shipped(OVERLAY_UNIT),
                             binaries=(NODE_SCRIPT,))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_every_shipped_unit_file_is_verified_above() -> None:
    """A unit or drop-in added under node/files/ gets a systemd-analyze test, or this fails."""
    shipped_units = {"/" + str(p.relative_to(SHIPPED_DIR)) for p in (SHIPPED_DIR / "etc/systemd/system").rglob("*")
                     if p.is_file()}
    assert shipped_units == {OVERLAY_UNIT, BACKUP_SERVICE,
                             *(dropin_path(u) for u in (*CONTROL_PLANE_UNITS, *WORKER_UNITS))}


def test_cadvisor_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = _systemd_verify(tmp_path, "cadvisor.service", render_cadvisor_unit())
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: an unknown key and an ExecStart on a missing binary are reported."""
    broken = render_cadvisor_unit().replace("Restart=on-failure", "Restart=sometimes\nBogusKey=1")
    broken = broken.replace("ExecStop=/usr/bin/podman", "ExecStop=/usr/bin/no-such-podman")
    result = _systemd_verify(tmp_path, "broken.service", broken)
    assert "BogusKey" in result.stderr and "sometimes" in result.stderr
    assert "no-such-podman" in result.stderr and result.returncode != 0


# --------------------------------------------------------------------------
# etcd backups: the service the timer starts, and the timer
# --------------------------------------------------------------------------


def test_the_backup_service_and_its_timer_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """The timer is verified with the service it starts beside it (systemd resolves Unit= and checks it)."""
    service = shipped(BACKUP_SERVICE)
    result = _systemd_verify(tmp_path / "service", f"{BACKUP_UNIT}.service", service, binaries=(BACKUP_PROGRAM,))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    result = _systemd_verify(tmp_path / "timer", f"{BACKUP_UNIT}.timer", render_backup_timer(60),
                             files={BACKUP_SERVICE: service}, binaries=(BACKUP_PROGRAM,))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_verify_reports_a_broken_backup_unit(tmp_path: Path) -> None:
    """The check above can fail: a timer with a calendar systemd cannot parse, a misspelt hardening key."""
    bad = render_backup_timer(60).replace(on_calendar(60), "*-*-* 00/24:00:00")
    timer = _systemd_verify(tmp_path / "timer", f"{BACKUP_UNIT}.timer", bad,
                            files={BACKUP_SERVICE: shipped(BACKUP_SERVICE)}, binaries=(BACKUP_PROGRAM,))
    assert "00/24" in timer.stderr, timer.stderr
    typo = shipped(BACKUP_SERVICE).replace("ProtectSystem=strict", "ProtectSystm=strict")
    broken = _systemd_verify(tmp_path / "typo", f"{BACKUP_UNIT}.service", typo, binaries=(BACKUP_PROGRAM,))
    assert "ProtectSystm" in broken.stderr


def test_the_backup_service_runs_the_shipped_program_as_etcd_with_both_environment_files() -> None:
    unit = shipped(BACKUP_SERVICE)
    assert re.findall(r"^ExecStart=(.+)$", unit, re.MULTILINE) == [BACKUP_PROGRAM]
    assert re.findall(r"^EnvironmentFile=(.+)$", unit, re.MULTILINE) == [
        "/etc/etcd/etcd.conf", "/etc/atomic/cluster.env", BACKUP_ENV]
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    # etcd's user (group etcd may read the member's key), no capability, a read-only system
    assert (settings["User"], settings["Group"]) == ("etcd", "etcd")
    assert settings["CapabilityBoundingSet"] == "" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["StateDirectory"] == BACKUP_UNIT
    assert settings["Type"] == "oneshot"


SYSTEMD_CALENDAR_OK = re.compile(r"Normalized form: (.+)\n.*Next elapse: ", re.S)


@pytest.mark.parametrize("minutes", [5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440])
def test_every_backup_interval_is_a_calendar_systemd_accepts_at_the_same_times_everywhere(minutes: int) -> None:
    """`systemd-analyze calendar` parses the timer's OnCalendar= and lists when it fires: every `minutes`
    from midnight, so every master's timer fires at the same wall-clock times."""
    assert shutil.which(SYSTEMD_ANALYZE), "systemd-analyze is missing: install Debian's systemd"
    expression = on_calendar(minutes)
    assert f"OnCalendar={expression}\n" in render_backup_timer(minutes)
    done = subprocess.run([SYSTEMD_ANALYZE, "calendar", "--iterations=4", expression], capture_output=True,
                          text=True, timeout=60, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and SYSTEMD_CALENDAR_OK.search(done.stdout), done.stdout + done.stderr
    times = re.findall(r"(\d\d):(\d\d):(\d\d) UTC", done.stdout)[1:]  # the elapses, after "Next elapse"
    elapsed = [int(h) * 60 + int(m) for h, m, s in times if s == "00"]
    assert len(elapsed) >= 2, done.stdout
    assert all(t % minutes == 0 for t in elapsed), (minutes, elapsed)
    gaps = {(b - a) % (24 * 60) or 24 * 60 for a, b in itertools.pairwise(elapsed)}
    assert gaps == {minutes}, (minutes, done.stdout)


@pytest.mark.parametrize("minutes", [0, 7, 90, 1441])
def test_an_interval_that_does_not_divide_the_day_is_refused(minutes: int) -> None:
    with pytest.raises(ValueError, match="interval"):
        on_calendar(minutes)


def test_systemd_refuses_a_broken_calendar() -> None:
    """The calendar check above can fail."""
    done = subprocess.run([SYSTEMD_ANALYZE, "calendar", "*-*-* *:00/15:99"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
