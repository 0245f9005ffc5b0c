"""Load profiles: parsing, validation errors that name file and field, shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadgen.errors import LoadConfigError
from loadgen.profile import (
    KindMix,
    Profile,
    load_profile,
    parse_assignment,
    parse_profile,
    target_at,
)

EXAMPLE = """\
version: 1
shape: step
users: 20
duration_s: 90
spawn_rate: 4
step: {users: 5, seconds: 15}
ramp_s: 30
mix:
  predict: {weight: 6, rate: 12.5}
  write: {weight: 3}
  canary: {weight: 1, rate: 2}
residency: {us: 3, eu: 1}
entities: 500
golden: golden.json
timeout_s: 3
connect_timeout_s: 1
"""


def _write(tmp_path: Path, text: str, golden: dict[str, float] | None = None) -> Path:
    if golden is not None:
        (tmp_path / "golden.json").write_text(json.dumps(golden))
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


def test_the_example_profile_is_read_field_by_field(tmp_path: Path) -> None:
    path = _write(tmp_path, EXAMPLE, {"us-1": 0.25, "eu-2": 0.5})
    profile = load_profile(path)
    assert profile.shape == "step"
    assert (profile.users, profile.duration_s, profile.spawn_rate) == (20, 90.0, 4.0)
    assert (profile.step_users, profile.step_seconds, profile.ramp_s) == (5, 15.0, 30.0)
    assert profile.mix == {
        "predict": KindMix(6, 12.5),
        "write": KindMix(3, 5.0),  # rate keeps its default
        "canary": KindMix(1, 2.0),
    }
    assert profile.shares(["us", "eu"]) == {"us": 0.75, "eu": 0.25}
    with pytest.raises(LoadConfigError, match=r"residency\.us: not a jurisdiction"):
        profile.shares(["eu", "apac"])
    assert profile.entities == 500
    assert profile.golden == str(tmp_path / "golden.json")  # relative to the profile file
    assert profile.golden_scores == {"us-1": 0.25, "eu-2": 0.5}
    assert (profile.timeout_s, profile.connect_timeout_s) == (3.0, 1.0)
    assert profile.source == str(path)


def test_defaults_and_no_canaries_without_golden_scores() -> None:
    profile = parse_profile({}, env={})
    assert profile.shape == "constant"
    assert profile.users is None and profile.duration_s is None
    assert [profile.weight(k) for k in ("predict", "write", "canary")] == [8, 2, 0]
    assert profile.shares(["us", "eu", "apac"]) == {"us": 1 / 3, "eu": 1 / 3, "apac": 1 / 3}
    assert profile.entities == 10_000


def test_golden_file_from_the_environment(tmp_path: Path) -> None:
    golden = tmp_path / "g.json"
    golden.write_text(json.dumps({"us-7": 0.125}))
    profile = parse_profile({}, env={"GAMEDAY_GOLDEN": str(golden)})
    assert profile.golden_scores == {"us-7": 0.125}
    assert profile.weight("canary") == 1


def test_to_dict_with_golden_scores_is_itself_a_profile(tmp_path: Path) -> None:
    profile = load_profile(_write(tmp_path, EXAMPLE, {"us-1": 0.25}))
    again = parse_profile(json.loads(json.dumps(profile.to_dict(with_golden_scores=True))))
    assert again.to_dict() | {"source": None} == profile.to_dict() | {"source": None}
    assert again.golden_scores == profile.golden_scores


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("users: 0\n", "users: must be a positive integer, got 0"),
        ("users: ten\n", "users: must be a positive integer, got 'ten'"),
        ("users: true\n", "users: must be a positive integer, got True"),
        ("duration_s: -1\n", "duration_s: must be a number > 0, got -1"),
        ("shape: ramp\n", "shape: must be one of constant, step, soak, got 'ramp'"),
        ("colour: red\n", "colour: unknown field"),
        ("version: 2\n", "version: unsupported, got 2"),
        ("mix: {write: {weight: -1}}\n", "mix.write.weight: must be an integer >= 0, got -1"),
        ("mix: {write: {weight: 1.5}}\n", "mix.write.weight: must be an integer >= 0, got 1.5"),
        ("mix: {read: {weight: 1}}\n", "mix.read: unknown field"),
        ("mix: {predict: {rate: fast}}\n", "mix.predict.rate: must be a number >= 0, got 'fast'"),
        ("mix: {predict: {speed: 1}}\n", "mix.predict.speed: unknown field"),
        ("mix: [1, 2]\n", "mix: expected a mapping"),
        ("residency: {us: 0, eu: 0}\n", "residency: the shares add up to 0"),
        ("residency: {asia: fast}\n", "residency.asia: must be a number >= 0, got 'fast'"),
        ("step: {seconds: 0}\n", "step.seconds: must be a number > 0, got 0"),
        ("golden: missing.json\n", "missing.json: cannot read the golden file"),
        ("golden_scores: {'': 0.5}\n", "'': an entity id is a non-empty string"),
        ("golden_scores: {us-1: high}\n", "us-1: score must be a number, got 'high'"),
        ("- 1\n- 2\n", "expected a mapping at the top, got list"),
        ("users: [\n", "not valid YAML"),
    ],
    ids=lambda v: v.split(":")[0].strip() if v.endswith("\n") else "",
)
def test_bad_profiles_name_the_file_and_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(LoadConfigError) as caught:
        load_profile(path)
    assert str(caught.value).startswith(str(path) + ": ")
    assert expected in str(caught.value)


def test_a_missing_profile_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(LoadConfigError, match=r"nope\.yaml: cannot read the profile"):
        load_profile(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (Profile(duration_s=10), "users: not set"),
        (Profile(users=3), "duration_s: not set"),
        (
            Profile(
                users=1,
                duration_s=1,
                mix={"predict": KindMix(0, 1), "write": KindMix(0, 1), "canary": KindMix(5, 1)},
            ),
            "every weight is 0",
        ),
    ],
    ids=["no-users", "no-duration", "only-canaries-without-golden"],
)
def test_check_runnable(profile: Profile, expected: str) -> None:
    with pytest.raises(LoadConfigError, match=expected):
        profile.check_runnable()


def test_with_mix_and_assignments() -> None:
    profile = Profile().with_mix("write", weight=5.0).with_mix("predict", rate=0)
    assert profile.mix["write"] == KindMix(5, 5.0)
    assert profile.mix["predict"] == KindMix(8, 0.0)
    assert parse_assignment("canary=3", "--weight") == ("canary", 3.0)
    with pytest.raises(LoadConfigError, match="--weight: expected KIND=VALUE"):
        parse_assignment("reads=3", "--weight")
    with pytest.raises(LoadConfigError, match="--rate: write: not a number, got 'x'"):
        parse_assignment("write=x", "--rate")
    with pytest.raises(LoadConfigError, match=r"write: must be an integer >= 0, got 1\.5"):
        Profile().with_mix("write", weight=1.5)


def test_constant_shape_holds_then_ends() -> None:
    profile = Profile(users=10, duration_s=5, spawn_rate=2)
    assert target_at(profile, 0.0) == (10, 2.0)
    assert target_at(profile, 4.99) == (10, 2.0)
    assert target_at(profile, 5.0) is None


def test_step_shape_adds_a_step_per_period_up_to_users() -> None:
    profile = Profile(shape="step", users=10, duration_s=100, step_users=4, step_seconds=10)
    levels = [target_at(profile, t) for t in (0, 9.9, 10, 25, 99)]
    assert [lvl[0] if lvl else None for lvl in levels] == [4, 4, 8, 10, 10]
    assert target_at(profile, 100) is None


def test_soak_shape_ramps_over_ramp_s() -> None:
    profile = Profile(shape="soak", users=30, duration_s=3600, ramp_s=60)
    assert target_at(profile, 0) == (30, 0.5)
    assert target_at(profile, 3600) is None


def test_no_duration_never_ends() -> None:
    assert target_at(Profile(users=2), 1e9) == (2, 2.0)
