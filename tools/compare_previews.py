"""Compare every stack's offline preview of two revisions, file by file, byte for byte.

    python -m tools.compare_previews [--base REV] [--head REV] [--stack NAME ...]

Checks out REV (default: HEAD) into a temporary git worktree, previews every stack there and in
the working tree (or --head REV) with the same interpreter, and compares everything the preview
writes: plan.json, k8s/*.yaml, nodes/*.yaml, topology.svg and topology.png. A refactoring that
must not change behaviour shows "identical" for every stack; anything else lists the files that
differ (and, for text, the first differing line). Exit status: 0 identical, 1 differences, 2 the
comparison could not run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
# One preview takes a few seconds; a hung one must not hang the comparison.
PREVIEW_TIMEOUT = 300


@contextmanager
def _worktree(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="atomic-compare-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), rev], cwd=PROJECT_DIR,
                       check=True, timeout=60)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=PROJECT_DIR, check=False,
                           timeout=60)


def _stacks(tree: Path) -> list[str]:
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in (tree / "stacks").glob("Pulumi.*.yaml"))


def _preview(tree: Path, stacks: Sequence[str], out: Path) -> None:
    for stack in stacks:
        done = subprocess.run([sys.executable, "-m", "tools.preview", "--stack", stack, "--quiet", "--out", str(out)],
                              cwd=tree, capture_output=True, text=True, timeout=PREVIEW_TIMEOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"preview of {stack} in {tree} failed: {done.stderr.strip()[-2000:]}")


def _first_difference(a: bytes, b: bytes) -> str:
    try:
        left, right = a.decode().splitlines(), b.decode().splitlines()
    except UnicodeDecodeError:
        return f"binary, {len(a)} vs {len(b)} bytes"
    for number, (x, y) in enumerate(zip(left, right, strict=False), start=1):
        if x != y:
            return f"line {number}: {x[:100]!r} vs {y[:100]!r}"
    return f"{len(left)} vs {len(right)} lines"


def compare(base_out: Path, head_out: Path, stack: str) -> list[str]:
    """The differences between two previews of one stack, one line each (empty: identical)."""
    base_dir, head_dir = base_out / stack, head_out / stack
    base_files = {p.relative_to(base_dir) for p in base_dir.rglob("*") if p.is_file()}
    head_files = {p.relative_to(head_dir) for p in head_dir.rglob("*") if p.is_file()}
    lines = [f"only in base: {p}" for p in sorted(base_files - head_files)]
    lines += [f"only in head: {p}" for p in sorted(head_files - base_files)]
    for path in sorted(base_files & head_files):
        a, b = (base_dir / path).read_bytes(), (head_dir / path).read_bytes()
        if a != b:
            lines.append(f"differs: {path} ({_first_difference(a, b)})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="the revision to compare against (default: HEAD)")
    parser.add_argument("--head", default=None, help="a revision instead of the working tree")
    parser.add_argument("--stack", action="append", default=None, help="only this stack (repeatable)")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="atomic-compare-out-") as tmp, _worktree(args.base) as base_tree:
            stacks = args.stack or _stacks(base_tree)
            base_out, head_out = Path(tmp) / "base", Path(tmp) / "head"
            _preview(base_tree, stacks, base_out)
            if args.head:
                with _worktree(args.head) as head_tree:
                    _preview(head_tree, stacks, head_out)
            else:
                _preview(PROJECT_DIR, stacks, head_out)
            failed = False
            for stack in stacks:
                differences = compare(base_out, head_out, stack)
                files = sum(1 for p in (base_out / stack).rglob("*") if p.is_file())
                print(f"{stack}: {'identical' if not differences else 'DIFFERENT'} ({files} files)")
                for line in differences:
                    print(f"  {line}")
                failed = failed or bool(differences)
    except (RuntimeError, subprocess.SubprocessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
