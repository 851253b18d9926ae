"""Validate the Prometheus operator objects the MySQL set renders (ServiceMonitor, PrometheusRule).

kubernetes-validate knows only Kubernetes' own kinds. These two are custom resources of the
Prometheus operator (monitoring.coreos.com/v1); they are checked against the JSON schemas that
@kubernetes-models/prometheus-operator (npm, pinned with its lock file in tools/crds/) generates
from the operator's own CRDs, by tools/crds/validate.mjs under node. The packages are installed
with `npm ci` into a cache outside the repository (~/.cache/atomic-mysql/crds-<lock hash>, or
$CRD_VALIDATE_CACHE) the first time; failing that, CrdValidateError (tests fail, never skip).

    python -m tools.crd_validate build/dev/k8s     # every monitoring.coreos.com object there
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

CRDS_DIR = Path(__file__).resolve().parent / "crds"
GROUP = "monitoring.coreos.com/"


class CrdValidateError(RuntimeError):
    pass


def _cache() -> Path:
    lock = (CRDS_DIR / "package-lock.json").read_bytes()
    root = os.environ.get("CRD_VALIDATE_CACHE") or str(Path.home() / ".cache" / "atomic-mysql")
    return Path(root) / f"crds-{hashlib.sha256(lock).hexdigest()[:12]}"


def ensure_installed() -> Path:
    """The directory holding node_modules for validate.mjs, installed from the lock file if needed."""
    target = _cache()
    if (target / "node_modules" / "@kubernetes-models" / "prometheus-operator").is_dir():
        return target
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise CrdValidateError("node and npm are needed to validate the Prometheus operator objects (Debian: nodejs"
                               " npm)")
    staging = Path(tempfile.mkdtemp(prefix="crds-", dir=target.parent if target.parent.exists() else None))
    for name in ("package.json", "package-lock.json"):
        shutil.copy(CRDS_DIR / name, staging / name)
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=staging, capture_output=True,
                          text=True, timeout=600, check=False)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise CrdValidateError(f"npm ci of tools/crds failed: {done.stderr.strip()[-1500:]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(target)
    return target


def validate(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per object ('ok ...' or 'invalid ...'); raises CrdValidateError if any is invalid."""
    installed = ensure_installed()
    script = installed / "validate.mjs"
    shutil.copy(CRDS_DIR / "validate.mjs", script)
    with tempfile.TemporaryDirectory() as scratch:
        paths = []
        for index, obj in enumerate(objects):
            path = Path(scratch) / f"{index}.json"
            path.write_text(json.dumps(obj))
            paths.append(str(path))
        if not paths:
            raise CrdValidateError("no monitoring.coreos.com objects to validate")
        done = subprocess.run(["node", str(script), *paths], cwd=installed, capture_output=True, text=True,
                              timeout=120, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0:
        raise CrdValidateError("\n".join(line for line in lines if not line.startswith("ok ")) or done.stderr)
    return lines


def monitoring_objects(directory: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(GROUP):
                found.append(doc)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tools.crd_validate <directory of rendered objects>", file=sys.stderr)
        return 2
    try:
        for line in validate(monitoring_objects(Path(args[0]))):
            print(line)
    except CrdValidateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
