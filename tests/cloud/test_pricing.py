"""The price table and the estimates of `orchard aws cost`."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from orchard.cloud import pricing
from orchard.cli import main
from orchard.errors import OrchardError


def test_table_states_its_date_region_and_sources():
    table = pricing.price_table()
    assert dt.date.fromisoformat(pricing.PRICE_TABLE_DATE) == dt.date.fromisoformat(table["as_of"])
    assert pricing.table_date() == pricing.PRICE_TABLE_DATE
    assert pricing.PRICE_TABLE_REGION == table["region"] == "eu-west-3"
    assert table["currency"] == "USD" and table["sources"]["emr"].startswith("https://aws.amazon.com/")
    for instance_type, row in table["instances"].items():
        assert row["ec2_spot"] < row["ec2_on_demand"], instance_type
        assert 0 < row["emr"] < row["ec2_on_demand"], instance_type


def test_hourly_cost_is_nodes_times_ec2_plus_emr():
    row = pricing.price_table()["instances"]["m5.xlarge"]
    assert pricing.hourly_cost("m5.xlarge", 4) == pytest.approx(4 * (row["ec2_on_demand"] + row["emr"]))
    assert pricing.hourly_cost("m5.xlarge", 4, spot=True) == pytest.approx(4 * (row["ec2_spot"] + row["emr"]))
    assert pricing.hourly_cost("m5.xlarge", 0) == 0
    assert pricing.hourly_cost("m5.xlarge", 1, region="eu-west-3") > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"instance_type": "p5.48xlarge", "count": 1}, "no price for instance type"),
    ({"instance_type": "m5.xlarge", "count": 1, "region": "us-east-1"}, "eu-west-3 only"),
    ({"instance_type": "m5.xlarge", "count": -1}, ">= 0"),
])
def test_hourly_cost_errors(kwargs, message):
    with pytest.raises(OrchardError, match=message):
        pricing.hourly_cost(**kwargs)


def test_seeds_cluster_estimate():
    """1 primary + 3 core m5.xlarge: per hour, per run and per million images."""
    result = pricing.estimate("m5.xlarge", 3, images=90_000, ms_per_image=40.0, startup_hours=0.2)
    per_node = pricing.hourly_cost("m5.xlarge", 1)
    assert result["per_hour"]["on_demand"] == pytest.approx(4 * per_node, abs=1e-3)
    spot = pricing.hourly_cost("m5.xlarge", 1) + pricing.hourly_cost("m5.xlarge", 3, spot=True)
    assert result["per_hour"]["spot"] == pytest.approx(spot, abs=1e-3)
    compute_hours = 90_000 * 0.040 / 12 / 3600  # 12 worker vCPUs
    assert result["projection"]["compute_hours"] == pytest.approx(compute_hours, abs=1e-4)
    assert result["per_run"]["hours"] == pytest.approx(0.2 + compute_hours, abs=1e-3)
    assert result["per_run"]["on_demand"] == pytest.approx(4 * per_node * (0.2 + compute_hours), abs=0.01)
    million_hours = 1e6 * 0.040 / 12 / 3600
    assert result["per_million_images"]["on_demand"] == pytest.approx(4 * per_node * million_hours, abs=0.01)


def test_no_per_image_figure_without_a_measurement():
    result = pricing.estimate("m5.xlarge", 3, hours=2)
    assert "per_million_images" not in result and result["per_run"]["hours"] == 2


def test_cost_command(capsys):
    assert main(["aws", "cost", "--images", "90000", "--ms-per-image", "40", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["price_table"]["as_of"] == pricing.PRICE_TABLE_DATE
    assert set(result) >= {"per_hour", "per_run", "per_million_images"}
    assert main(["aws", "cost", "--core-count", "3", "--hours", "1.5"]) == 0
    text = capsys.readouterr().out
    assert "per hour:" in text and "per run (1.50 h" in text and pricing.PRICE_TABLE_DATE in text
    assert main(["aws", "cost", "--instance-type", "x1.nope"]) == 2
    assert "no price for instance type" in capsys.readouterr().err
