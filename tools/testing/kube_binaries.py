"""Where the tests find real Kubernetes server binaries (kube-apiserver, -controller-manager,
-scheduler, kubelet, kube-proxy), in this order:

1. KUBE_BIN_DIR: a directory holding all five, used as it is;
2. shared/kube/unpack in the project's parent directory or one above it (the workplace's
   checked copy of an upstream build; its own script verifies the checksums and unpacks it);
3. the official release binaries of KUBERNETES_TEST_RELEASE, downloaded from dl.k8s.io with the
   .sha256 files published beside each binary, into a cache (KUBE_CACHE, else
   ~/.cache/atomic-mysql/kube-<release>); a binary whose checksum does not match is refused.

When none works the error is one line saying what was tried. Nothing here skips: the tests that
need the binaries fail with that line.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from components.pins import KUBERNETES_TEST_RELEASE

BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
RELEASE_URL = "https://dl.k8s.io/release"
PROJECT_DIR = Path(__file__).resolve().parents[2]
# Unpacking 70 MB of xz takes a few seconds; a download of ~400 MB takes longer, but not forever.
UNPACK_TIMEOUT = 600
DOWNLOAD_TIMEOUT = 120  # per request: urllib's socket timeout, so a stalled transfer fails too


class KubeBinariesError(RuntimeError):
    """No usable Kubernetes binaries; the message is one line saying what was tried."""


def _complete(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in BINARIES)


def _from_env() -> Path | None:
    value = os.environ.get("KUBE_BIN_DIR")
    if not value:
        return None
    directory = Path(value)
    if not _complete(directory):
        missing = [name for name in BINARIES if not os.access(directory / name, os.X_OK)]
        raise KubeBinariesError(f"KUBE_BIN_DIR={value} lacks executable {', '.join(missing)}")
    return directory


def shared_unpack_script(start: Path | None = None) -> Path | None:
    """shared/kube/unpack next to the project or in a directory above it (a clone may sit deeper)."""
    for parent in (start or PROJECT_DIR).parents:
        script = parent / "shared" / "kube" / "unpack"
        if script.is_file() and os.access(script, os.X_OK):
            return script
    return None


def _from_shared(script: Path) -> Path:
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=UNPACK_TIMEOUT, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise KubeBinariesError(f"{script} failed: {reason}")
    directory = Path(done.stdout.strip().splitlines()[-1])
    if not _complete(directory):
        raise KubeBinariesError(f"{script} printed {directory}, which lacks the binaries")
    return directory


def cache_dir(release: str = KUBERNETES_TEST_RELEASE) -> Path:
    base = os.environ.get("KUBE_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "atomic-mysql" / f"kube-{release}"


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
        return bytes(response.read())


def download(release: str = KUBERNETES_TEST_RELEASE, base_url: str | None = None,
             target: Path | None = None) -> Path:
    """The official binaries of `release`, each checked against its published SHA-256, in the cache."""
    base = (base_url or os.environ.get("KUBE_RELEASE_URL") or RELEASE_URL).rstrip("/")
    directory = target or cache_dir(release)
    if _complete(directory):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    for name in BINARIES:
        path = directory / name
        if os.access(path, os.X_OK):
            continue
        url = f"{base}/{release}/bin/linux/amd64/{name}"
        try:
            expected = _fetch(f"{url}.sha256").decode().split()[0].lower()
            content = _fetch(url)
        except (urllib.error.URLError, OSError, IndexError, UnicodeDecodeError) as error:
            raise KubeBinariesError(f"downloading {url} failed: {error}") from None
        actual = hashlib.sha256(content).hexdigest()
        if actual != expected:
            raise KubeBinariesError(f"{url}: sha256 {actual} does not match the published {expected}")
        partial = path.with_suffix(".partial")
        partial.write_bytes(content)
        partial.chmod(0o755)
        partial.replace(path)  # only a verified binary ever has the final name
    return directory


def find() -> Path:
    """The directory holding the five binaries; raises KubeBinariesError (one line) when none can be had."""
    directory = _from_env()
    if directory is not None:
        return directory
    script = shared_unpack_script()
    tried = []
    if script is not None:
        try:
            return _from_shared(script)
        except (KubeBinariesError, subprocess.SubprocessError) as error:
            tried.append(str(error))
    else:
        tried.append(f"no shared/kube/unpack above {PROJECT_DIR}")
    try:
        return download()
    except KubeBinariesError as error:
        tried.append(str(error))
    raise KubeBinariesError("no Kubernetes binaries: KUBE_BIN_DIR is not set; " + "; ".join(tried))


def version(binary: Path) -> str:
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()
