"""The pull-request workflow: current pulumi/actions, the CLI pinned to the SDK, stacks never
created by a pull request, the policy pack in the preview; and the docs say exactly that."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "preview.yml"
REVIEW = (ROOT / "docs" / "review.md").read_text()


def workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def sdk_pin() -> str:
    match = re.search(r"^pulumi==([0-9.]+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert match, "requirements.txt pins the pulumi SDK"
    return match.group(1)


def documented() -> tuple[str, str]:
    """(action major version, CLI version) as docs/review.md states them."""
    action = re.search(r"\*\*`pulumi/actions@(v\d+)`\*\*", REVIEW)
    cli = re.search(r"\*\*The Pulumi CLI ([0-9.]+)\*\*", REVIEW)
    assert action and cli, "docs/review.md names the action's version and the CLI pin"
    return action.group(1), cli.group(1)


def pulumi_steps(data: dict[str, Any]) -> list[dict[str, Any]]:
    steps = [step for job in data["jobs"].values() for step in job.get("steps", [])]
    return [step for step in steps if str(step.get("uses", "")).startswith("pulumi/actions")]


def version_violations(data: dict[str, Any]) -> list[str]:
    """Every use of pulumi/actions that is not the documented major version with the documented CLI pin."""
    action, cli = documented()
    found = []
    for step in pulumi_steps(data):
        if step["uses"] != f"pulumi/actions@{action}":
            found.append(f"{step.get('name')}: uses {step['uses']}, docs say pulumi/actions@{action}")
        if str((step.get("with") or {}).get("pulumi-version")) != cli:
            found.append(f"{step.get('name')}: pulumi-version is not {cli}")
    return found


def test_every_pulumi_action_is_the_documented_version_with_the_documented_cli_pin() -> None:
    action, cli = documented()
    assert len(pulumi_steps(workflow())) == 2
    assert version_violations(workflow()) == []
    assert cli == sdk_pin(), "the CLI is pinned to the SDK version in requirements.txt"
    assert action == "v7", "v7 is the current major version (pulumi/actions#1407, 2026-05-01)"


def test_an_old_action_or_a_floating_cli_is_caught() -> None:
    text = WORKFLOW.read_text()
    old = text.replace("uses: pulumi/actions@v7", "uses: pulumi/actions@v6")
    floating = re.sub(r"^(\s+)pulumi-version: .*\n", "", text, count=1, flags=re.M)
    assert len(version_violations(yaml.safe_load(old))) == 2
    assert version_violations(yaml.safe_load(floating)) == ["The Pulumi CLI, pinned: pulumi-version is not "
                                                            f"{sdk_pin()}"]


def test_the_preview_runs_the_policy_pack_on_stacks_that_must_already_exist() -> None:
    job = workflow()["jobs"]["policy-preview"]
    names = [step.get("name", "") for step in job["steps"]]
    preview = next(step for step in job["steps"] if step.get("with", {}).get("command") == "preview")
    assert preview["with"]["policyPacks"] == "policy"
    assert preview["with"]["upsert"] is False, "a pull request never creates a stack"
    check = next(step for step in job["steps"] if "pulumi stack select" in str(step.get("run", "")))
    assert names.index(check["name"]) < names.index(preview["name"])
    assert "exit 1" in check["run"] and "pulumi stack init" in check["run"]
    assert check["env"]["STACK"] == preview["with"]["stack-name"]
    assert set(job["strategy"]["matrix"]["stack"]) == {"dev", "staging", "prod"}
