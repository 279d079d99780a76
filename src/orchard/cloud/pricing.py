"""What an EMR cluster costs: a price table shipped with orchard (data/aws-prices.json).

The table holds, for one region and one date (`PRICE_TABLE_REGION`, `PRICE_TABLE_DATE`), the
EC2 On-Demand price, an indicative Spot price and the Amazon EMR surcharge of a few instance
types, in USD per instance-hour. Nothing here calls AWS: the prices are list prices copied into
the table by hand, to be checked against the AWS pricing pages before budgeting.

    >>> from orchard.cloud.pricing import hourly_cost, PRICE_TABLE_DATE
    >>> hourly_cost("m5.xlarge", 4)          # 4 nodes, EC2 On-Demand + EMR, USD per hour
    1.088
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from orchard.errors import OrchardError

PRICE_TABLE_FILE = Path(__file__).with_name("data") / "aws-prices.json"
DEFAULT_REGION = "eu-west-3"
# Cluster start (provisioning, bootstrap action, YARN up) before the step runs: billed, no work.
DEFAULT_STARTUP_HOURS = 0.2


def _load_table() -> Dict[str, Any]:
    with open(PRICE_TABLE_FILE, encoding="utf-8") as handle:
        return json.load(handle)


_TABLE: Dict[str, Any] = _load_table()
PRICE_TABLE_DATE: str = _TABLE["as_of"]
PRICE_TABLE_REGION: str = _TABLE["region"]
PRICE_TABLE_CURRENCY: str = _TABLE["currency"]


@dataclass(frozen=True)
class InstancePrice:
    """Prices of one instance type, USD per instance-hour."""

    instance_type: str
    vcpu: int
    memory_gib: float
    ec2_on_demand: float
    ec2_spot: float  # indicative
    emr: float  # the EMR surcharge, the same On-Demand or Spot

    def hourly(self, spot: bool = False) -> float:
        """EC2 (On-Demand or Spot) + EMR, for one node."""
        return (self.ec2_spot if spot else self.ec2_on_demand) + self.emr


def table_date() -> str:
    """The date the price table was written down (ISO 8601)."""
    return PRICE_TABLE_DATE


def price_table() -> Dict[str, Any]:
    """The whole table, as shipped (a copy)."""
    return json.loads(json.dumps(_TABLE))


def instance_types() -> List[str]:
    return sorted(_TABLE["instances"])


def instance_price(instance_type: str, region: str = DEFAULT_REGION) -> InstancePrice:
    """Prices of `instance_type` in `region`; OrchardError when the table does not have them."""
    if region != PRICE_TABLE_REGION:
        raise OrchardError(
            f"orchard's price table covers {PRICE_TABLE_REGION} only (as of {PRICE_TABLE_DATE}), "
            f"not {region}"
        )
    row = _TABLE["instances"].get(instance_type)
    if row is None:
        raise OrchardError(
            f"no price for instance type {instance_type!r} in orchard's table "
            f"({PRICE_TABLE_REGION}, {PRICE_TABLE_DATE}); known: {', '.join(instance_types())}"
        )
    return InstancePrice(instance_type=instance_type, vcpu=int(row["vcpu"]),
                         memory_gib=float(row["memory_gib"]), ec2_on_demand=float(row["ec2_on_demand"]),
                         ec2_spot=float(row["ec2_spot"]), emr=float(row["emr"]))


def hourly_cost(instance_type: str, count: int, spot: bool = False, region: str = DEFAULT_REGION) -> float:
    """USD per hour for `count` nodes of `instance_type`: EC2 (On-Demand, or Spot) + EMR surcharge."""
    if count < 0:
        raise OrchardError(f"node count must be >= 0, got {count}")
    return round(count * instance_price(instance_type, region).hourly(spot), 6)


def cluster_hourly_cost(instance_type: str, core_count: int, spot: bool = False,
                        primary_type: Optional[str] = None, region: str = DEFAULT_REGION) -> Dict[str, float]:
    """USD per hour of a cluster: 1 primary node (always On-Demand) + `core_count` core nodes
    (On-Demand, or Spot with `spot`)."""
    primary = hourly_cost(primary_type or instance_type, 1, spot=False, region=region)
    core = hourly_cost(instance_type, core_count, spot=spot, region=region)
    return {"primary": round(primary, 4), "core": round(core, 4), "total": round(primary + core, 4)}


def estimate(instance_type: str = "m5.xlarge", core_count: int = 3, hours: Optional[float] = None,
             images: Optional[int] = None, ms_per_image: Optional[float] = None,
             primary_type: Optional[str] = None, startup_hours: float = DEFAULT_STARTUP_HOURS,
             region: str = DEFAULT_REGION, autoscale: Optional[Tuple[int, int]] = None) -> Dict[str, Any]:
    """Price per hour, per run and (given a measured per-image cost) per million images.

    With `autoscale` (MIN, MAX worker nodes, as `cluster create --autoscale`), `core_count` is
    MIN and the result's "autoscale" gives the range: USD per hour at MIN nodes and at MAX
    nodes (the MAX-MIN task nodes On-Demand, or Spot with --spot), and per run when the hours
    are known (all of them at MIN .. all at MAX: the bounds of what managed scaling can bill).

    `ms_per_image` is the processing time of one image on one vCPU, in milliseconds (measure it
    with `orchard run`: featurize seconds x cores / images). The run's hours are `hours` when
    given, else startup + images x ms_per_image spread over the core nodes' vCPUs.
    """
    if autoscale is not None:
        core_count = autoscale[0]
    if core_count < 1:
        raise OrchardError(f"--core-count must be >= 1, got {core_count}")
    for name, value in (("--hours", hours), ("--images", images), ("--ms-per-image", ms_per_image)):
        if value is not None and value <= 0:
            raise OrchardError(f"{name} must be positive, got {value}")
    core = instance_price(instance_type, region)
    primary = instance_price(primary_type or instance_type, region)
    worker_vcpus = core.vcpu * core_count
    result: Dict[str, Any] = {
        "price_table": {"as_of": PRICE_TABLE_DATE, "region": PRICE_TABLE_REGION,
                        "currency": PRICE_TABLE_CURRENCY, "file": PRICE_TABLE_FILE.name},
        "cluster": {"primary": f"1 x {primary.instance_type} (On-Demand)",
                    "core": f"{core_count} x {instance_type}", "worker_vcpus": worker_vcpus},
        "per_node_hour": {
            instance_type: {"ec2_on_demand": core.ec2_on_demand, "ec2_spot": core.ec2_spot,
                            "emr": core.emr},
        },
    }
    hourly = {
        "on_demand": cluster_hourly_cost(instance_type, core_count, False, primary.instance_type, region)["total"],
        "spot": cluster_hourly_cost(instance_type, core_count, True, primary.instance_type, region)["total"],
    }
    result["per_hour"] = hourly
    compute_hours = None
    if images and ms_per_image:
        compute_hours = images * ms_per_image / 1000.0 / worker_vcpus / 3600.0
        result["projection"] = {
            "images": images, "ms_per_image_per_vcpu": ms_per_image,
            "compute_hours": round(compute_hours, 4), "startup_hours": startup_hours,
        }
    if ms_per_image:
        million_hours = 1e6 * ms_per_image / 1000.0 / worker_vcpus / 3600.0
        result["per_million_images"] = {
            "hours": round(million_hours, 3),
            "on_demand": round(hourly["on_demand"] * million_hours, 2),
            "spot": round(hourly["spot"] * million_hours, 2),
            "note": "compute only, cluster start excluded",
        }
    run_hours = hours if hours is not None else (
        startup_hours + compute_hours if compute_hours is not None else None)
    if run_hours is not None:
        result["per_run"] = {
            "hours": round(run_hours, 4),
            "on_demand": round(hourly["on_demand"] * run_hours, 2),
            "spot": round(hourly["spot"] * run_hours, 2),
            "hours_from": "--hours" if hours is not None else "startup + projected compute",
        }
    if autoscale is not None:
        result["autoscale"] = autoscale_range(instance_type, autoscale, primary.instance_type, region,
                                              run_hours)
    return result


def autoscale_range(instance_type: str, autoscale: Tuple[int, int], primary_type: str,
                    region: str = DEFAULT_REGION, run_hours: Optional[float] = None) -> Dict[str, Any]:
    """USD per hour of a managed-scaling cluster at its MIN and MAX worker nodes.

    MIN core nodes are always On-Demand; the MAX-MIN task nodes On-Demand ("on_demand") or
    Spot ("spot_tasks"). With `run_hours`, the per-run bounds (every hour at MIN, at MAX).
    """
    low, high = autoscale
    if low < 1 or high < low:
        raise OrchardError(f"--autoscale {low}:{high}: need 1 <= MIN <= MAX")
    base = cluster_hourly_cost(instance_type, low, False, primary_type, region)["total"]
    tasks = high - low
    per_hour = {
        "min": base,
        "max_on_demand": round(base + hourly_cost(instance_type, tasks, False, region), 4),
        "max_spot_tasks": round(base + hourly_cost(instance_type, tasks, True, region), 4),
    }
    found: Dict[str, Any] = {"min_nodes": low, "max_nodes": high, "per_hour": per_hour}
    if run_hours is not None:
        found["per_run"] = {name: round(value * run_hours, 2) for name, value in per_hour.items()}
    return found


def format_estimate(result: Dict[str, Any]) -> str:
    """The estimate as a few readable lines."""
    table = result["price_table"]
    lines = [
        f"cluster: {result['cluster']['primary']} + {result['cluster']['core']} core nodes "
        f"({result['cluster']['worker_vcpus']} worker vCPUs)",
        f"prices: {table['region']}, {table['currency']}, table of {table['as_of']} "
        "(list prices, check before budgeting; Spot is indicative)",
    ]
    for instance_type, row in result["per_node_hour"].items():
        lines.append(f"  {instance_type}: EC2 {row['ec2_on_demand']:.3f}/h On-Demand, "
                     f"~{row['ec2_spot']:.3f}/h Spot, + EMR {row['emr']:.3f}/h")
    hourly = result["per_hour"]
    lines.append(f"per hour: {hourly['on_demand']:.3f} On-Demand, {hourly['spot']:.3f} with Spot core nodes")
    if "projection" in result:
        projection = result["projection"]
        lines.append(f"projection: {projection['images']} images x {projection['ms_per_image_per_vcpu']} ms "
                     f"/ vCPU = {projection['compute_hours'] * 60:.1f} min of compute "
                     f"+ {projection['startup_hours'] * 60:.0f} min cluster start")
    if "per_run" in result:
        run = result["per_run"]
        lines.append(f"per run ({run['hours']:.2f} h, {run['hours_from']}): {run['on_demand']:.2f} On-Demand, "
                     f"{run['spot']:.2f} with Spot")
    if "autoscale" in result:
        scale = result["autoscale"]
        rates = scale["per_hour"]
        lines.append(f"autoscale {scale['min_nodes']}..{scale['max_nodes']} worker nodes: per hour "
                     f"{rates['min']:.3f} at {scale['min_nodes']} .. {rates['max_on_demand']:.3f} at "
                     f"{scale['max_nodes']} On-Demand ({rates['max_spot_tasks']:.3f} with Spot task nodes)")
        if "per_run" in scale:
            run = scale["per_run"]
            lines.append(f"  per run: {run['min']:.2f} .. {run['max_on_demand']:.2f} "
                         f"({run['max_spot_tasks']:.2f} with Spot task nodes)")
    if "per_million_images" in result:
        million = result["per_million_images"]
        lines.append(f"per million images ({million['hours']:.2f} h of compute): {million['on_demand']:.2f} "
                     f"On-Demand, {million['spot']:.2f} with Spot")
    return "\n".join(lines)
