"""A stand-in for systemctl on one test master: the node's own programs call it as they would call systemctl.

    python -m tools.testing.fake_systemctl --root ROOT start|stop|restart|is-active [--no-block] [--quiet] UNIT...

`etcd` is real: started from ROOT/etc/etcd/etcd.conf (its ETCD_* variables, as Fedora's etcd.service
reads them) in a session of its own, its PID in ROOT/run/etcd.pid, stopped by that PID (SIGTERM, then
SIGKILL) with bounded waits. Every other unit (the Kubernetes control plane, the backup timer) is only
recorded in ROOT/run/systemctl.log, one "verb unit" line per call: no kubelet or apiserver runs here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tools.testing.node_root import env_values

ETCD = "/usr/bin/etcd"
STOP_GRACE = 15.0


def pidfile(root: Path) -> Path:
    return root / "run" / "etcd.pid"


def etcd_pid(root: Path) -> int | None:
    """The PID of this root's running etcd, or None (a stale PID, or a zombie, is no etcd)."""
    try:
        pid = int(pidfile(root).read_text().strip())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if state != "Z" and command.endswith(b"etcd") else None


def start_etcd(root: Path) -> None:
    if etcd_pid(root) is not None:
        return
    conf = (root / "etc/etcd/etcd.conf").read_text()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env_values(conf)}
    log = root / "log" / "etcd.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile(root).parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen([ETCD], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    pidfile(root).write_text(f"{process.pid}\n")


def stop_etcd(root: Path, sig: int = signal.SIGTERM) -> None:
    pid = etcd_pid(root)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + STOP_GRACE
    while etcd_pid(root) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if etcd_pid(root) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_GRACE
        while etcd_pid(root) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
    if etcd_pid(root) is not None:
        raise SystemExit(f"fake systemctl: etcd (pid {pid}) survived SIGKILL")
    pidfile(root).unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="systemctl (test stand-in)")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("verb", choices=("start", "stop", "restart", "is-active"))
    parser.add_argument("--no-block", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("units", nargs="+")
    args = parser.parse_args(argv)
    root: Path = args.root
    units = [u.removesuffix(".service") for u in args.units]
    log = root / "run" / "systemctl.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.writelines(f"{args.verb} {unit}\n" for unit in units)
    if args.verb == "is-active":
        active = all(etcd_pid(root) is not None for u in units if u == "etcd")
        if not args.quiet:
            print("active" if active else "inactive")
        return 0 if active else 3
    for unit in units:
        if unit != "etcd":
            continue
        if args.verb in ("stop", "restart"):
            stop_etcd(root)
        if args.verb in ("start", "restart"):
            start_etcd(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
