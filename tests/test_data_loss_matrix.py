"""The data-loss matrix (tools/data_loss.py): every common data change on dev, staging and prod keeps
every row, or is refused before anything changes with its one line.

Each change is run under the offline harness before and after, the "after" run given the stack
outputs the "before" run left (as the engine's readStackOutputs answers a real `up`). The replace
guard (tests/test_replace_guard.py) covers the everyday overrides with the same comparison.
Negative controls show that the judgement does see each way data is lost.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from components import tokens
from tools import data_loss
from tools.data_loss import DATA_CHANGES, Change, Outcome
from tools.harness.offline import Plan, run_program

STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[tuple[str, str], Outcome]]:
    found = {}
    for outcome in data_loss.matrix(STACKS):
        found[(outcome.stack, outcome.change.split(" [")[0])] = outcome
    print("\n" + data_loss.table(list(found.values())))  # the table of the closing note (pytest -s)
    yield found


def _rows() -> list[tuple[str, str]]:
    return [(stack, change.what) for change in DATA_CHANGES for stack in STACKS if stack in change.stacks]


@pytest.mark.parametrize(("stack", "what"), _rows(), ids=[f"{s}-{w}" for s, w in _rows()])
def test_no_change_loses_data_or_is_dropped_in_silence(outcomes: dict[tuple[str, str], Outcome],
                                                      stack: str, what: str) -> None:
    outcome = outcomes[(stack, what)]
    assert not outcome.losses, outcome.detail()
    assert not outcome.silent, outcome.detail()
    # No stateful resource is replaced or deleted, but for a generated password a configured one replaces.
    assert all(r.type == tokens.RANDOM_PASSWORD for r in outcome.replaced), outcome.replaced


@pytest.mark.parametrize("stack", STACKS)
def test_a_larger_size_grows_every_claim_and_keeps_the_set(outcomes: dict[tuple[str, str], Outcome],
                                                          stack: str) -> None:
    outcome = outcomes[(stack, "mysqlStorageSize up (x4)")]
    assert outcome.refused is None and outcome.replaced == []
    assert any("each claim patched" in note for note in outcome.notes), outcome.detail()


@pytest.mark.parametrize(("what", "setting"), [
    ("mysqlStorageSize down (1/2)", "mysqlStorageSize"),
    ("mysqlVersion 8.4 -> 8.0 (downgrade)", "mysqlVersion"),
    ("mysqlEngine mysql -> mariadb", "mysqlEngine"),
    ("namespace renamed", "namespace"),
    ("mysqlName renamed", "mysqlName"),
])
@pytest.mark.parametrize("stack", STACKS)
def test_what_the_volumes_cannot_take_is_refused_with_one_line(outcomes: dict[tuple[str, str], Outcome],
                                                              stack: str, what: str, setting: str) -> None:
    refused = outcomes[(stack, what)].refused
    assert refused is not None and "\n" not in refused
    assert refused.startswith(f"config atomic-mysql:{setting}=") and "stack output mysqlDeployed" in refused


@pytest.mark.parametrize("stack", STACKS)
def test_without_a_record_the_pods_and_the_api_server_still_stop_it(outcomes: dict[tuple[str, str], Outcome],
                                                                   stack: str) -> None:
    """A stack last deployed before the record existed: load.py cannot compare, the next layer stops it."""
    downgrade = outcomes[(stack, "mysqlVersion 8.4 -> 8.0, no record")]
    assert downgrade.refused is None and any("datadir-guard FATAL" in s for s in downgrade.stopped)
    shrink = outcomes[(stack, "mysqlStorageSize down (1/2), no record")]
    assert shrink.refused is None and any("API server refuses" in s for s in shrink.stopped)


def test_an_upgrade_rolls_in_place(outcomes: dict[tuple[str, str], Outcome]) -> None:
    for stack in STACKS:
        outcome = outcomes[(stack, "mysqlVersion 8.0 -> 8.4 (upgrade)")]
        assert outcome.refused is None and not outcome.stopped and outcome.replaced == []


# --------------------------------------------------------------------------
# Negative controls: the judgement sees each way data is lost
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev() -> Plan:
    return run_program("dev")


def test_control_a_renamed_set_with_delete_claims_is_a_loss(dev: Plan) -> None:
    after = run_program("dev", {"mysqlName": "db", "namespace": "shop"})  # no record: not refused
    outcome = data_loss.judge("dev", "rename", dev, after)
    assert any("every claim in it deleted" in loss for loss in outcome.losses), outcome.detail()
    assert any("claims deleted (whenDeleted=Delete)" in loss for loss in outcome.losses), outcome.detail()
    assert outcome.verdict() == "DATA LOST or at risk"


def test_control_prod_protect_turns_the_loss_into_a_stop() -> None:
    before = run_program("prod")
    outcome = data_loss.judge("prod", "rename", before, run_program("prod", {"namespace": "shop"}))
    assert not outcome.losses and any("protect stops the engine" in s for s in outcome.stopped), outcome.detail()


def test_control_a_downgrade_without_the_pod_guard_is_a_loss(dev: Plan) -> None:
    after = run_program("dev", {"mysqlVersion": "8.0"})
    for config_map in after.of_type(tokens.CONFIG_MAP):
        config_map.inputs = {**config_map.inputs, "data": {
            k: v for k, v in (config_map.inputs.get("data") or {}).items() if k != "datadir-guard.sh"}}
    outcome = data_loss.judge("dev", "downgrade", dev, after)
    assert any("crash-loops" in loss for loss in outcome.losses), outcome.detail()


def test_control_a_size_without_claim_patches_is_dropped_in_silence(dev: Plan) -> None:
    after = copy.copy(run_program("dev", {"mysqlStorageSize": "20Gi"}))
    after.resources = [r for r in after.resources if r.type != tokens.PERSISTENT_VOLUME_CLAIM_PATCH]
    outcome = data_loss.judge("dev", "size", dev, after)
    assert outcome.silent and outcome.verdict() == "not applied, in silence"


def test_control_a_template_change_not_ignored_replaces_the_set(dev: Plan) -> None:
    after = run_program("dev", {"mysqlStorageSize": "20Gi"})
    for r in after.of_type(tokens.STATEFUL_SET):
        r.options["ignoreChanges"] = []
    outcome = data_loss.judge("dev", "size", dev, after)
    assert any("claims deleted" in loss for loss in outcome.losses), outcome.detail()


def test_the_tool_exits_non_zero_when_a_change_loses_data(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(data_loss, "DATA_CHANGES", (Change("rename", {"mysqlName": "db"}, record=False),))
    monkeypatch.setattr(data_loss.matrix, "__defaults__", (STACKS, data_loss.DATA_CHANGES))
    assert data_loss.main(["--stack", "dev"]) == 1
    out = capsys.readouterr().out
    assert "| dev | rename [mysqlName=db] | DATA LOST or at risk |" in out and "1 changes, 1 losing data" in out
