"""The layering rule of the program's parts, as data, and a checker for it.

    python -m tools.architecture          # check every module; one line per violation, exit 1
    python -m tools.architecture --table  # the rule as the Markdown table docs/architecture.md shows

Each part may import only the parts listed for it (always itself, always the standard library)
and only the third-party packages listed for it. Imports under `if TYPE_CHECKING:` are for the
type checker only and do not count. The rule is checked on the source (ast), so a module that
breaks it fails the test before anything runs.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
SHARED = ("components.facts", "components.pins", "components.tokens")
SCHEMA = "components.settings.schema"


@dataclass(frozen=True)
class Part:
    name: str  # a module or package prefix, e.g. "components.node"
    what: str
    may_import: tuple[str, ...]  # other parts (prefixes) this one may import
    packages: tuple[str, ...]  # third-party top-level packages it may import
    must_not: str  # the rule in words, for the docs


PARTS: tuple[Part, ...] = (
    Part("components.facts", "ports, cluster domain, node-slot rules, tag contract, cert lifetimes", (), (),
         "import anything but the standard library"),
    Part("components.pins", "every pinned version and image", (), (), "import anything but the standard library"),
    Part("components.tokens", "resource type tokens (component tokens are URN-stable)", (), (),
         "import anything but the standard library"),
    Part(SCHEMA, "the stack's settings as frozen dataclasses", (), (),
         "import pulumi at run time (type annotations only), or any other part"),
    Part("components.settings.rules", "the rules a setting's value is checked against, as plain functions",
         SHARED, (), "import pulumi, or any part but the shared facts"),
    Part("components.settings.load", "the one reader of pulumi.Config; checks every value and every key",
         (*SHARED, SCHEMA, "components.settings.rules"),
         ("pulumi", "pulumi_aws", "pulumi_tls", "pulumi_random", "yaml"),
         "register resources (the provider SDKs only for their config keys and regions)"),
    Part("components.node", "pure renderers of every file a node gets; node/files/ the node's programs",
         (*SHARED, SCHEMA), ("yaml",), "import pulumi or any provider SDK"),
    Part("components.kube", "the Kubernetes provider and the object kit", (*SHARED, SCHEMA),
         ("pulumi", "pulumi_kubernetes"), "import AWS (pulumi_aws) or the node renderers"),
    Part("components.aws", "the cluster on EC2: network, IAM, PKI, load balancers, instances",
         (*SHARED, SCHEMA, "components.node"), ("pulumi", "pulumi_aws", "pulumi_tls", "pulumi_random", "yaml"),
         "create Kubernetes objects, or import kube/, addons/, workload/"),
    Part("components.addons", "CoreDNS, EBS CSI + default StorageClass, metrics-server",
         (*SHARED, SCHEMA, "components.kube"), ("pulumi", "pulumi_kubernetes", "pulumi_tls"),
         "import aws/ or node/ (what they need of the cluster comes in their Args)"),
    Part("components.workload", "the namespace, the MySQL set, the Guestbook",
         (*SHARED, SCHEMA, "components.kube"), ("pulumi", "pulumi_kubernetes", "pulumi_random", "pulumi_tls"),
         "import aws/, node/ or addons/ (the workload runs on any cluster)"),
    Part("__main__", "composes settings, cluster, add-ons and workload; nothing else",
         ("components",), ("pulumi",), "hold logic a component or a renderer could hold"),
    Part("policy", "the policy pack; validators.py holds the checks as plain functions",
         ("components.facts", "components.tokens"), ("pulumi_policy",),
         "import the program's components (the pack runs in its own venv)"),
    Part("tools", "harness, preview, scan, topology, verify, benchmarks, test servers",
         ("components", "tools"), ("pulumi", "pulumi_kubernetes", "pulumi_aws", "pulumi_tls", "pulumi_random",
                                   "google", "yaml", "PIL", "pymysql", "kubernetes_validate", "requests", "urllib3",
                                   "cryptography"),
         "import tests/"),
)


def part_of(module: str) -> Part | None:
    """The most specific part a module belongs to."""
    matches = [p for p in PARTS if module == p.name or module.startswith(p.name + ".")]
    return max(matches, key=lambda p: len(p.name)) if matches else None


def _is_local(module: str) -> bool:
    return module.split(".")[0] in ("components", "tools", "tests", "policy", "validators")


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return True
    return False


def imports(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, imported module) of every import executed at run time."""
    tree = ast.parse(source)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the module's own package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base == "__future__":
                continue
            if _is_local(base) and (PROJECT_DIR / base.replace(".", "/")).is_dir():
                # `from components.aws import iam`: from a package, the imported names are modules
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}"
            else:
                yield node.lineno, base


def _allowed(part: Part) -> str:
    return ", ".join((*part.may_import, *part.packages)) or "the standard library only"


def violations(module: str, source: str) -> list[str]:
    """Every import of `module` that breaks its part's rule, one line each."""
    part = part_of(module)
    if part is None:
        return []
    found = []
    for line, imported in imports(source, module):
        top = imported.split(".")[0]
        if part.name == "policy" and top == "validators":
            continue  # the pack's own module, found through its sys.path entry
        if _is_local(imported):
            ok = any(imported == a or imported.startswith(a + ".") for a in (part.name, *part.may_import))
        else:
            ok = top in sys.stdlib_module_names or top in part.packages
        if not ok:
            found.append(f"{module}:{line}: imports {imported}, but {part.name} may import {_allowed(part)} "
                         f"(it must not {part.must_not})")
    return found


def modules(root: Path = PROJECT_DIR) -> Iterator[tuple[str, Path]]:
    """(module name, path) of every Python module of the program, its tools and its policy pack."""
    yield "__main__", root / "__main__.py"
    for folder in ("components", "tools", "policy"):
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def check(root: Path = PROJECT_DIR) -> list[str]:
    return [line for name, path in modules(root) for line in violations(name, path.read_text(encoding="utf-8"))]


def table() -> str:
    rows = ["| part | what | may import | must not |", "|---|---|---|---|"]
    for part in PARTS:
        allowed = ", ".join(f"`{p}`" for p in (*part.may_import, *part.packages)) or "the standard library only"
        rows.append(f"| `{part.name}` | {part.what} | {allowed} | {part.must_not} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="store_true", help="print the rule as a Markdown table")
    args = parser.parse_args(argv)
    if args.table:
        print(table())
        return 0
    found = check()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
