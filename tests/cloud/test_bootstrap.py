"""The EMR bootstrap action: what it installs, that it fails loudly and can run twice.

It runs here with stand-ins for what an EMR node has: `aws s3 cp` (copies from a folder playing
the bucket), the node's Python (pip calls are recorded, not run; everything else runs this
interpreter) and no sudo.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchard import __version__
from orchard.cli import main
from orchard.cloud.artifacts import node_requirements, render_bootstrap, write_bootstrap

WHEEL = f"orchard-{__version__}-py3-none-any.whl"
MODEL = "mobilenet_v2_1.0_224.onnx"

FAKE_AWS = """#!/bin/bash
# aws s3 cp [--only-show-errors] s3://bucket/key DEST, from $FAKE_S3/bucket/key
[ "$1 $2" = "s3 cp" ] || { echo "fake aws: unsupported: $*" >&2; exit 2; }
shift 2
[ "$1" = "--only-show-errors" ] && shift
[ -n "${FAKE_AWS_FAIL:-}" ] && { echo "fatal error: An error occurred (403) when calling the HeadObject operation: Forbidden" >&2; exit 1; }
cp "$FAKE_S3/${1#s3://}" "$2"
"""

FAKE_PYTHON = """#!/bin/bash
# pip calls are recorded (pip show answers "not installed"); anything else runs the real Python
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "$*" >> "$PIP_LOG"
  [ "$3" = "show" ] && exit 1
  exit 0
fi
exec "$REAL_PYTHON" "$@"
"""


@pytest.fixture
def node(tmp_path, model_file):
    """A fake EMR node: bin/ with aws and python, a fake bucket, a model folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("aws", FAKE_AWS), ("python3", FAKE_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    bucket = tmp_path / "s3" / "bucket" / "orchard"
    (bucket / "wheels").mkdir(parents=True)
    (bucket / "models").mkdir()
    (bucket / "wheels" / WHEEL).write_bytes(b"not really a wheel")
    shutil.copy2(model_file, bucket / "models" / MODEL)
    script = write_bootstrap(tmp_path / "emr-bootstrap.sh",
                             hashlib.sha256(model_file.read_bytes()).hexdigest())
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_S3": str(tmp_path / "s3"),
        "PIP_LOG": str(tmp_path / "pip.log"), "REAL_PYTHON": sys.executable,
        "ORCHARD_NODE_PYTHON": str(bin_dir / "python3"), "ORCHARD_SUDO": "",
        "ORCHARD_NODE_MODEL_DIR": str(tmp_path / "opt" / "models"), "HOME": str(tmp_path),
    }
    return {"script": script, "env": env, "tmp": tmp_path}


def run(node, *args, **env):
    return subprocess.run(["bash", str(node["script"]), *args], capture_output=True, text=True,
                          env={**node["env"], **env}, timeout=120)


ARGS = (f"s3://bucket/orchard/wheels/{WHEEL}", f"s3://bucket/orchard/models/{MODEL}")


def test_script_is_valid_bash_with_the_pins_and_no_pyspark():
    text = render_bootstrap("abc")
    assert "@@" not in text
    checked = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert text.startswith("#!/bin/bash") and "set -euo pipefail" in text
    pins = node_requirements()
    assert pins and all("==" in pin for pin in pins)
    assert not any(pin.lower().startswith("pyspark") for pin in pins)
    for pin in pins:
        assert pin in text
    names = {pin.split("==")[0].lower() for pin in pins}
    assert {"onnxruntime", "pillow", "pyarrow", "pandas", "numpy", "tqdm", "pyyaml",
            "matplotlib", "boto3"} <= names


def test_pins_have_python39_versions():
    """Versions that still ship Python 3.9 wheels (EMR 7's Python); pandas < 3."""
    pins = dict(pin.split("==") for pin in node_requirements())
    major = {name: int(version.split(".")[0]) for name, version in pins.items()}
    minor = {name: tuple(int(x) for x in version.split(".")[:2]) for name, version in pins.items()}
    assert major["pandas"] < 3 and minor["numpy"] <= (2, 0)  # numpy 2.1 dropped Python 3.9
    assert minor["onnxruntime"] <= (1, 19)  # 1.20 dropped Python 3.9
    assert major["pillow"] <= 11 and minor["matplotlib"] <= (3, 9)


def test_installs_wheel_without_deps_and_the_model_and_runs_twice(node):
    for attempt in (1, 2):
        result = run(node, *ARGS)
        assert result.returncode == 0, f"attempt {attempt}: {result.stderr}"
        assert "orchard-bootstrap: done" in result.stderr
    pip_calls = Path(node["env"]["PIP_LOG"]).read_text().splitlines()
    installs = [c for c in pip_calls if c.startswith("-m pip install")]
    assert len(installs) == 4  # twice: the pinned libraries, then the wheel
    requirement_installs = [c for c in installs if "--requirement" in c]
    wheel_installs = [c for c in installs if c.endswith(WHEEL)]
    assert len(requirement_installs) == 2 and len(wheel_installs) == 2
    assert all("--no-deps" in c and "--force-reinstall" in c for c in wheel_installs)
    assert not any("pyspark" in c for c in pip_calls if "show" not in c)
    installed = Path(node["env"]["ORCHARD_NODE_MODEL_DIR"]) / MODEL
    assert installed.is_file() and not list(installed.parent.glob("*.part"))


def test_fails_loudly(node):
    result = run(node, *ARGS, FAKE_AWS_FAIL="1")
    assert result.returncode != 0
    assert "orchard-bootstrap: FAILED" in result.stderr and "403" in result.stderr
    missing = run(node, ARGS[0])
    assert missing.returncode != 0 and "usage:" in missing.stderr


def test_refuses_a_model_with_the_wrong_checksum(node):
    model = Path(node["env"]["FAKE_S3"]) / "bucket" / "orchard" / "models" / MODEL
    model.write_bytes(model.read_bytes()[:-1] + b"x")
    result = run(node, *ARGS)
    assert result.returncode != 0 and "checksum mismatch" in result.stderr
    assert not (Path(node["env"]["ORCHARD_NODE_MODEL_DIR"]) / MODEL).exists()


def test_bootstrap_command_writes_the_script(tmp_path, capsys):
    target = tmp_path / "out" / "bootstrap.sh"
    assert main(["aws", "bootstrap", "--output", str(target)]) == 0
    assert target.read_text() == render_bootstrap(
        "8fa2195a28ab2e7f2b799de75a5f04451f7033ecbbce15b4d1dc9e45a2d3a703")
    assert os.access(target, os.X_OK)
    capsys.readouterr()
    assert main(["aws", "bootstrap"]) == 0
    assert capsys.readouterr().out == target.read_text()
