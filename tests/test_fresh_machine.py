"""The fresh-machine path, as a new user takes it: the built wheel (not editable) in a new
virtual environment, no ORCHARD_* variables, no user cache, no way out to the network:
`orchard demo` answers with an accuracy and `orchard doctor` passes; then `scripts/setup.sh`
reuses that environment and ends with the same check."""
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
WHEEL_LIMIT_BYTES = 20 * 2**20
DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens there: any download attempt fails


def clean_env(home: Path) -> dict:
    """The environment of a new user: no ORCHARD_*, no PYTHONPATH, an empty home, no network."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ORCHARD_", "PYSPARK_", "SPARK_")) and key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(home), http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY,
               HTTP_PROXY=DEAD_PROXY, HTTPS_PROXY=DEAD_PROXY, no_proxy="", NO_PROXY="")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the venv's folder, the wheel) after `pip wheel . --no-deps` and a plain `pip install`."""
    root = tmp_path_factory.mktemp("fresh")
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
                    "--quiet", "-w", str(wheels)], check=True, timeout=600)
    wheel = next(wheels.glob("orchard-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # dependencies from the local pip cache / index (installing may reach an index; running may not)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                   check=True, timeout=1200)
    return venv, wheel


def test_the_wheel_ships_the_model_and_the_demo_images_and_stays_small(installed):
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "orchard/models/mobilenet_v2_1.0_224.onnx" in names
    assert "orchard/models/NOTICE.txt" in names and "orchard/demo/NOTICE.txt" in names
    assert len([n for n in names if n.startswith("orchard/demo/fruits-360/") and n.endswith(".jpg")]) == 160
    assert wheel.stat().st_size < WHEEL_LIMIT_BYTES


def test_demo_and_doctor_work_offline_from_the_wheel(installed, tmp_path):
    venv, _ = installed
    home = tmp_path / "home"
    home.mkdir()
    orchard = str(venv / "bin" / "orchard")
    demo = subprocess.run([orchard, "demo", "--output", str(tmp_path / "demo")], cwd=tmp_path,
                          env=clean_env(home), capture_output=True, text=True, timeout=1200)
    assert demo.returncode == 0, demo.stderr[-4000:]
    accuracy = float(re.search(r"^accuracy: ([\d.]+)", demo.stdout, re.M).group(1))
    assert accuracy >= 0.6, demo.stdout
    assert (tmp_path / "demo" / "run" / "run.json").is_file()
    assert (tmp_path / "demo" / "run" / "report" / "report.md").is_file()
    assert "/site-packages/orchard/models/" in (tmp_path / "demo" / "run" / "run.json").read_text()
    assert not (home / ".cache" / "orchard" / "models").exists()  # nothing downloaded or cached

    doctor = subprocess.run([orchard, "doctor"], cwd=tmp_path, env=clean_env(home), capture_output=True,
                            text=True, timeout=600)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr[-3000:]
    lines = doctor.stdout.splitlines()
    for name in ("java", "spark", "blas", "model", "memory"):
        assert any(re.match(rf"(OK|WARN)\s+{name}\b", line) for line in lines), doctor.stdout
    assert "(packaged)" in doctor.stdout and doctor.stdout.rstrip().endswith("doctor: ready")


def test_setup_script_uses_the_environment_and_ends_with_the_doctor(installed, tmp_path):
    venv, _ = installed
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORCHARD_")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(["scripts/setup.sh", "--venv", str(venv)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "creating the virtual environment" not in result.stdout  # it used the one there
    assert "doctor: ready" in result.stdout
    assert f"source {venv}/bin/activate" in result.stdout
