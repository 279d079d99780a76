"""bench/peers, bench/seeds_keras.py and bench/spark_floor.py: the scripts start and explain
themselves (--help), and the peers' ratios are the README's.

They time other systems in their own virtual environments (bench/peers/setup.sh), so CI only
checks that each one parses its options without those environments: Ray, Daft, TensorFlow and
pyspark are imported after the options are read.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = [BENCH / "peers" / "run.py", BENCH / "peers" / "ray_job.py", BENCH / "peers" / "daft_job.py",
           BENCH / "peers" / "onnx_to_keras_weights.py",
           BENCH / "seeds_keras.py", BENCH / "spark_floor.py"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_help(script: Path) -> None:
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                            cwd=script.parent, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
    assert "--output" in result.stdout or "--rounds" in result.stdout  # its own options, listed


def test_setup_help_and_syntax() -> None:
    setup = BENCH / "peers" / "setup.sh"
    assert subprocess.run(["bash", "-n", str(setup)]).returncode == 0
    result = subprocess.run(["bash", str(setup), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "bench-venvs" in result.stdout


def _round(walls: dict, marginals: dict) -> dict:
    return {"runs": {s: {"bench": {"wall": w}} for s, w in walls.items()},
            "rates": {s: {"marginal": m} for s, m in marginals.items()}}


def test_ratios_for_orchard_and_its_int8_run() -> None:
    """The issue's three ratios, within a round, for each orchard variant that ran."""
    sys.path.insert(0, str(BENCH / "peers"))
    try:
        from run import round_ratios
    finally:
        sys.path.pop(0)
    systems = ["orchard", "orchard-int8", "ray", "daft", "keras"]
    r = _round({"orchard": 60.0, "orchard-int8": 40.0, "ray": 120.0, "daft": 50.0, "keras": 240.0},
               {"orchard": 150.0, "orchard-int8": 250.0, "ray": 60.0, "daft": 200.0, "keras": 30.0})
    ratios = round_ratios(systems, r)
    assert ratios == pytest.approx({
        "orchard/best peer marginal": 0.75, "bench orchard/daft": 1.2, "bench seeds/orchard": 4.0,
        "orchard-int8/best peer marginal": 1.25, "bench orchard-int8/daft": 0.8, "bench seeds/orchard-int8": 6.0})
    # without int8, Daft or the seeds: only what can be computed
    assert round_ratios(["orchard", "ray"], r) == pytest.approx({"orchard/best peer marginal": 2.5})
