"""ServedVersions: the default version, resolution by version or label, UNKNOWN_VERSION naming the field."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from service.errors import UnknownVersion, rich_status
from service.served_versions import ServedVersions, VersionInfo


def _engines(*versions: int) -> dict[int, Any]:
    return {v: SimpleNamespace(version=v) for v in versions}


def test_the_default_is_stable_if_labelled_else_the_newest() -> None:
    engines = _engines(3, 4, 5)
    assert ServedVersions(engines).default is engines[5]
    served = ServedVersions(engines, {"stable": 3, "canary": 4})
    assert served.default_version == 3 and served.default is engines[3]
    assert served.resolve(label="canary") is engines[4] and served.resolve(version=5) is engines[5]
    assert served.resolve() is engines[3]
    assert served.describe() == [
        VersionInfo(5, (), False),
        VersionInfo(4, ("canary",), False),
        VersionInfo(3, ("stable",), True),
    ]


def test_unknown_versions_and_labels_name_the_field_and_list_what_is_loaded() -> None:
    served = ServedVersions(_engines(3, 4), {"stable": 3})
    with pytest.raises(UnknownVersion) as by_version:
        served.resolve(version=7)
    assert by_version.value.field == "model_version"
    assert str(by_version.value) == "model_version: version 7 is not loaded; loaded: 4, 3 (stable)"
    with pytest.raises(UnknownVersion) as by_label:
        served.resolve(label="canary")
    assert by_label.value.field == "version_label"
    assert "label 'canary' is not assigned" in str(by_label.value)
    code, _, _ = rich_status(by_label.value.within("requests[2]."))
    assert code == grpc.StatusCode.NOT_FOUND


def test_a_served_set_is_never_empty_and_labels_point_at_loaded_versions() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ServedVersions({})
    with pytest.raises(ValueError, match="not loaded"):
        ServedVersions(_engines(3), {"stable": 2})
