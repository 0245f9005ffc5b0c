from __future__ import annotations

import inspect

import pytest

from infra import actions
from infra.errors import ConfigError


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: actions.kill_region(""), id="kill-empty"),
        pytest.param(lambda: actions.restore_region("  "), id="restore-blank"),
        pytest.param(lambda: actions.corrupt_replica(""), id="corrupt-empty"),
        pytest.param(lambda: actions.partition_regions("us-east", ""), id="partition-empty-side"),
        pytest.param(lambda: actions.degrade_link(""), id="degrade-empty"),
    ],
)
def test_an_action_without_a_target_is_refused(call: object) -> None:
    assert callable(call)
    with pytest.raises(ConfigError, match="required"):
        call()


def test_unknown_platform_is_refused() -> None:
    with pytest.raises(ConfigError, match="gameday_platform 'mars'"):
        actions.kill_region("us-east", configuration={"gameday_platform": "mars"})


def test_every_public_action_is_typed_and_documented() -> None:
    for name in actions.__all__:
        func = getattr(actions, name)
        assert func.__doc__ and len(func.__doc__.strip()) > 20, name
        signature = inspect.signature(func)
        assert signature.return_annotation != inspect.Signature.empty, name
        assert "configuration" in signature.parameters, name


def test_chaostoolkit_discovers_the_actions() -> None:
    from chaoslib.discovery.discover import discover_activities

    found = discover_activities("infra.actions", "action")
    names = {activity["name"] for activity in found}
    assert names == set(actions.__all__)
    kill = next(a for a in found if a["name"] == "kill_region")
    assert kill["type"] == "action"
    assert [arg["name"] for arg in kill["arguments"]] == ["region"]


def test_gameday_discover_lists_every_action_and_probe() -> None:
    import json

    from click.testing import CliRunner

    from experiments.cli import main

    result = CliRunner().invoke(main, ["discover", "--json"])
    assert result.exit_code == 0, result.output
    found = {(a["type"], a["mod"], a["name"]) for a in json.loads(result.output)["activities"]}
    assert {("action", "infra.actions", name) for name in actions.__all__} <= found
    assert ("probe", "probes.rto", "client_rto") in found
    assert ("probe", "probes.steady_state", "measured") in found


@pytest.mark.parametrize(
    ("platform", "message"),
    [
        ("aws", "gameday_platform_file is required for gameday_platform aws"),
        ("kubernetes", "gameday_platform_file is required for gameday_platform 'kubernetes'"),
    ],
)
def test_each_target_is_its_own_drivers_to_refuse(platform: str, message: str) -> None:
    # The seam hands the action to infra.<platform>.driver, which refuses before any
    # call when it is not told which platform file names the targets.
    with pytest.raises(ConfigError, match=message):
        actions.kill_region("us-east", configuration={"gameday_platform": platform})


def test_after_close_no_fault_is_applied_but_reverts_still_go_through() -> None:
    import importlib.util

    actions.close()
    try:
        with pytest.raises(ConfigError, match="kill-region refused: the process that owns"):
            actions.kill_region("us-east", configuration={"gameday_platform": "kubernetes"})
        if importlib.util.find_spec("infra.kubernetes") is None:
            # A revert is not refused by the gate: it reaches the (missing) driver.
            with pytest.raises(ConfigError, match="not installed"):
                actions.revert_all(configuration={"gameday_platform": "kubernetes"})
    finally:
        actions._CLOSED.clear()
