"""bench/peers and bench/seeds_keras.py: the scripts start and explain themselves (--help).

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
           BENCH / "seeds_keras.py"]


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
