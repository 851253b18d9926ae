"""`make scan`: checkov over every stack's rendered Kubernetes objects.

Runs the offline preview of every stack (unless --no-preview), then checkov
(from its own tool venv, .tools/checkov: it pins packages the program's venv
cannot share) over build/<stack>/k8s, one run per stack so that a NetworkPolicy
of one stack never covers the pods of another. A failed check fails the scan
unless .checkov-skips.yaml skips it with a reason; a skip that matches nothing
fails it too, so the list only ever holds skips that still mean something.
Exit status: 0 clean, 1 findings or stale skips, 2 the scan could not run.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
BUILD_DIR = PROJECT_DIR / "build"
CHECKOV_VENV = PROJECT_DIR / ".tools" / "checkov"
CHECKOV_REQUIREMENTS = PROJECT_DIR / "requirements-checkov.txt"
SKIPS_FILE = PROJECT_DIR / ".checkov-skips.yaml"
CHECK_ID = re.compile(r"^CKV2?_K8S_[0-9]+$")
MIN_REASON = 30
# Bounded: checkov over one stack takes seconds; a hung run must not hang CI.
CHECKOV_TIMEOUT = 300


class ScanError(RuntimeError):
    """The scan could not run (no checkov, unreadable output, a malformed skip list)."""


@dataclass(frozen=True)
class Skip:
    check: str
    reason: str
    resources: tuple[str, ...] = ("*",)
    stacks: tuple[str, ...] = ("*",)

    def matches(self, finding: Finding) -> bool:
        return (
            finding.check == self.check
            and any(fnmatch.fnmatchcase(finding.resource, p) for p in self.resources)
            and any(fnmatch.fnmatchcase(finding.stack, p) for p in self.stacks)
        )


@dataclass(frozen=True)
class Finding:
    stack: str
    check: str
    name: str
    resource: str
    file: str

    def line(self) -> str:
        return f"{self.stack}: {self.check} {self.resource} ({self.file}): {self.name}"


@dataclass
class StackResult:
    stack: str
    passed: int
    failed: list[Finding]


# --------------------------------------------------------------------------
# Tool venv
# --------------------------------------------------------------------------


def ensure_venv(venv: Path, requirements: Path, executable: str) -> Path:
    """The tool `executable` from `venv`, creating the venv from `requirements` when it is missing or stale.

    Raises ScanError (never skips) when it cannot be installed: a scan that silently did not run
    would read as a clean one.
    """
    tool = venv / "bin" / executable
    marker = venv / ".installed"
    if tool.exists() and marker.exists() and marker.stat().st_mtime >= requirements.stat().st_mtime:
        return tool
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
         str(requirements)],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise ScanError(f"cannot install {requirements.name} into {venv}: {done.stderr.strip()[-2000:]}")
    if not tool.exists():
        raise ScanError(f"{requirements.name} installed no {executable} into {venv}")
    marker.touch()
    return tool


# --------------------------------------------------------------------------
# Skip list
# --------------------------------------------------------------------------


def _patterns(entry: dict[str, Any], key: str) -> tuple[str, ...]:
    value = entry.get(key, ["*"])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ScanError(f"skip {entry.get('check')}: {key} must be a list of patterns")
    return tuple(value)


def load_skips(path: Path = SKIPS_FILE) -> list[Skip]:
    document = yaml.safe_load(path.read_text()) or {}
    skips = []
    for entry in document.get("skips") or []:
        check, reason = str(entry.get("check", "")), str(entry.get("reason", "")).strip()
        if not CHECK_ID.match(check):
            raise ScanError(f"skip {check!r}: not a checkov Kubernetes check id (CKV_K8S_n or CKV2_K8S_n)")
        if len(reason) < MIN_REASON:
            raise ScanError(f"skip {check}: every skip needs a reason (at least {MIN_REASON} characters)")
        unknown = set(entry) - {"check", "reason", "resources", "stacks"}
        if unknown:
            raise ScanError(f"skip {check}: unknown keys {sorted(unknown)}")
        skips.append(Skip(check, reason, _patterns(entry, "resources"), _patterns(entry, "stacks")))
    return skips


# --------------------------------------------------------------------------
# checkov
# --------------------------------------------------------------------------


def _reports(stdout: str) -> list[dict[str, Any]]:
    """checkov's JSON: one report object, a list of them, or a bare summary when nothing was scanned."""
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError as error:
        raise ScanError(f"checkov printed no JSON report: {stdout[:500]!r}") from error
    reports = data if isinstance(data, list) else [data]
    return [r for r in reports if isinstance(r, dict)]


def run_checkov(checkov: Path, stack: str, k8s_dir: Path) -> StackResult:
    if not any(k8s_dir.glob("*.yaml")):
        raise ScanError(f"{k8s_dir} holds no manifests: run the preview of {stack} first")
    command = [
        str(checkov),
        "--directory", str(k8s_dir),
        "--framework", "kubernetes",
        "--output", "json",
        "--compact",
        # No network: never fetch guidelines or mappings from the vendor's platform.
        "--skip-download",
    ]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=CHECKOV_TIMEOUT, env=env, check=False)
    # checkov exits 1 when a check failed; anything else is the tool failing.
    if done.returncode not in (0, 1):
        raise ScanError(f"checkov failed on {stack} (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    passed, failed = 0, []
    for report in _reports(done.stdout):
        results = report.get("results") or {}
        passed += len(results.get("passed_checks") or [])
        if (report.get("summary") or {}).get("parsing_errors"):
            raise ScanError(f"checkov could not parse some manifests of {stack}: {results.get('parsing_errors')}")
        for item in results.get("failed_checks") or []:
            failed.append(
                Finding(stack, item["check_id"], item.get("check_name", ""), item.get("resource", ""),
                        Path(item.get("file_abs_path") or item.get("file_path", "")).name)
            )
    return StackResult(stack, passed, failed)


# --------------------------------------------------------------------------
# The scan
# --------------------------------------------------------------------------


@dataclass
class ScanReport:
    results: list[StackResult]
    unskipped: list[Finding]
    skipped: dict[Skip, list[Finding]]

    @property
    def stale(self) -> list[Skip]:
        return [skip for skip, found in self.skipped.items() if not found]

    @property
    def ok(self) -> bool:
        return not self.unskipped and not self.stale

    def lines(self) -> list[str]:
        out = []
        for r in self.results:
            skipped = sum(1 for found in self.skipped.values() for f in found if f.stack == r.stack)
            unskipped = sum(1 for f in self.unskipped if f.stack == r.stack)
            out.append(f"{r.stack}: {r.passed} passed, {unskipped} failed, {skipped} skipped (reasoned)")
        out += [f"FAILED {f.line()}" for f in self.unskipped]
        out += [f"STALE SKIP {s.check} {list(s.resources)}: it matched no finding; remove it" for s in self.stale]
        return out


def apply_skips(results: list[StackResult], skips: list[Skip]) -> ScanReport:
    skipped: dict[Skip, list[Finding]] = {skip: [] for skip in skips}
    unskipped = []
    for result in results:
        for finding in result.failed:
            skip = next((s for s in skips if s.matches(finding)), None)
            if skip is None:
                unskipped.append(finding)
            else:
                skipped[skip].append(finding)
    return ScanReport(results, unskipped, skipped)


def scan(stacks: Sequence[str], build_dir: Path, checkov: Path, skips: list[Skip]) -> ScanReport:
    # Two at a time: the machine has two cores and checkov is CPU-bound.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda s: run_checkov(checkov, s, build_dir / s / "k8s"), stacks))
    return apply_skips(results, skips)


def _preview(stacks: Sequence[str], build_dir: Path) -> None:
    from tools import preview

    for stack in stacks:
        preview.preview(stack, out_root=build_dir, quiet=True)


def main(argv: Sequence[str] | None = None) -> int:
    from tools.harness.pulumi_project import load_project

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", action="append", help="scan only this stack (repeatable; default: every stack)")
    parser.add_argument("--build", type=Path, default=BUILD_DIR, help="preview output root (default: build/)")
    parser.add_argument("--no-preview", action="store_true", help="scan what build/ already holds")
    parser.add_argument("--skips", type=Path, default=SKIPS_FILE, help="skip list (default: .checkov-skips.yaml)")
    args = parser.parse_args(argv)
    stacks = args.stack or load_project().stacks()
    try:
        skips = load_skips(args.skips)
        checkov = ensure_venv(CHECKOV_VENV, CHECKOV_REQUIREMENTS, "checkov")
        if not args.no_preview:
            _preview(stacks, args.build)
        report = scan(stacks, args.build, checkov, skips)
    except (ScanError, subprocess.TimeoutExpired) as error:
        print(f"scan: error: {error}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    # A partial scan (--stack) cannot tell a stale skip from one another stack needs.
    if args.stack and not report.unskipped:
        return 0
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
