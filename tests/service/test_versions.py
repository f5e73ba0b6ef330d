"""VersionPolicy: the --versions syntax (and the retrieval-serve flag) and which versions it chooses from those on
disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import cli
from service.versions import VersionPolicy


@pytest.mark.parametrize(
    ("text", "latest", "specific", "shown"),
    [("latest:2", 2, (), "latest:2"), ("3,5", None, (5, 3), "5,3"), (" 7 ", None, (7,), "7")],
)
def test_parse_accepts_latest_n_and_lists_of_versions(
    text: str, latest: int | None, specific: tuple[int, ...], shown: str
) -> None:
    policy = VersionPolicy.parse(text)
    assert (policy.latest, policy.specific, str(policy)) == (latest, specific, shown)


@pytest.mark.parametrize("text", ["latest:0", "latest:", "latest", "3,3", "0", "3,x", "", "-1"])
def test_parse_refuses_bad_syntax_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="latest:N") as error:
        VersionPolicy.parse(text)
    assert repr(text) in str(error.value)


def test_default_is_the_newest_good_version() -> None:
    assert VersionPolicy() == VersionPolicy(latest=1) and str(VersionPolicy()) == "latest:1"
    with pytest.raises(ValueError, match="either latest or specific"):
        VersionPolicy(latest=2, specific=(3,))


def test_latest_n_skips_refused_versions_and_asks_no_more_than_needed() -> None:
    asked: list[int] = []

    def usable(version: int) -> bool:
        asked.append(version)
        return version != 4

    assert VersionPolicy(latest=2).select([1, 2, 3, 4, 5], usable) == [5, 3]
    assert asked == [5, 4, 3], "versions older than needed are never loaded"
    assert VersionPolicy(latest=3).select([2], lambda v: True) == [2]


def test_specific_versions_are_those_on_disk_that_load() -> None:
    policy = VersionPolicy.of_versions([5, 3, 9])
    assert policy.select([1, 3, 5, 6], lambda v: v != 5) == [3]
    assert policy.missing([1, 3, 5, 6]) == [9]
    assert VersionPolicy(latest=1).missing([]) == []


def test_serve_versions_flag_builds_the_policy_and_refuses_bad_values_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--models-dir", str(tmp_path), "--model-name", "m"]
    assert cli.config_from_args(cli.parse_args([*base, "--versions", "latest:2"])).version_policy == VersionPolicy(2)
    assert cli.config_from_args(cli.parse_args([*base, "--versions", "3,5"])).version_policy.specific == (5, 3)
    assert cli.config_from_args(cli.parse_args([*base, "--pin-version", "4"])).version_policy.specific == (4,)
    assert cli.config_from_args(cli.parse_args(base)).version_policy == VersionPolicy(latest=1)
    with pytest.raises(SystemExit) as bad:
        cli.parse_args([*base, "--versions", "newest"])
    assert bad.value.code == 2
    assert "--versions expects latest:N (N >= 1) or versions like 3,5" in capsys.readouterr().err
    assert cli.main([*base, "--versions", "3", "--pin-version", "3"]) == 2
    assert "a pinned version (3) and versions (3) exclude each other" in capsys.readouterr().err
