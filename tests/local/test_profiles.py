"""Named execution profiles (orchard.local.profiles)."""
from __future__ import annotations

import pytest

from orchard.errors import OrchardError
from orchard.local.profiles import profile_spark_conf


def test_the_local_profile_says_how_to_start_the_box(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHARD_STATE_DIR", str(tmp_path / "none"))
    with pytest.raises(OrchardError, match="orchard local up"):
        profile_spark_conf("local")


def test_an_unknown_profile_names_the_known_ones():
    with pytest.raises(OrchardError, match=r"unknown profile 'emr' \(known: local\)"):
        profile_spark_conf("emr")
