"""The EMR bootstrap action, run as the real shell script against a fake node: a root folder
standing for /, `aws s3 cp` copying from a folder playing the bucket, EMR 7's Python 3.9 as the
node's system Python (any `pip` run against it is recorded and refused), and a real
`python3 -m venv` installing the real wheelhouse with --no-index. No sudo.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchard.cli import main
from orchard.cloud.artifacts import render_bootstrap, write_bootstrap
from orchard.cloud.layout import NODE_MODEL_DIR, NODE_VENV
from orchard.cloud.wheelhouse import LOCK_NAME, locked_pins, normalize
from tests.cloud.conftest import LAYOUT, MODEL

FAKE_AWS = """#!/bin/bash
# aws s3 cp [--only-show-errors] [--recursive] s3://bucket/key DEST, from $FAKE_S3/bucket/key
[ "$1 $2" = "s3 cp" ] || { echo "fake aws: unsupported: $*" >&2; exit 2; }
shift 2
recursive=""
while [ "${1#--}" != "$1" ]; do [ "$1" = "--recursive" ] && recursive=1; shift; done
[ -n "${FAKE_AWS_FAIL:-}" ] && { echo "fatal error: An error occurred (403) when calling the HeadObject operation: Forbidden" >&2; exit 1; }
source="$FAKE_S3/${1#s3://}"
if [ -n "$recursive" ]; then mkdir -p "$2" && cp -rL "$source/." "$2/"; else cp -L "$source" "$2"; fi
"""

SYSTEM_PYTHON = """#!/bin/bash
# the node's system Python: its libraries belong to rpm; any pip run against it is refused
for arg in "$@"; do
  if [ "$arg" = "pip" ] || [ "$arg" = "ensurepip" ]; then echo "$*" >> "$SYSTEM_PIP_LOG"; exit 1; fi
done
exec "$REAL_PYTHON" "$@"
"""

WHEEL_URI = f"s3://bucket/{LAYOUT.wheel_key}"
WHEELHOUSE_URI = "s3://bucket/orchard/wheelhouse/"
MODEL_URI = f"s3://bucket/orchard/models/{MODEL}"
ARGS = (WHEEL_URI, WHEELHOUSE_URI, MODEL_URI)


def make_node(tmp_path: Path, model_file: Path, real_python: str) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("aws", FAKE_AWS), ("python3", SYSTEM_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    bucket = tmp_path / "s3" / "bucket" / "orchard"
    for folder in ("wheels", "models", "wheelhouse"):
        (bucket / folder).mkdir(parents=True)
    shutil.copy2(model_file, bucket / "models" / MODEL)
    script = write_bootstrap(tmp_path / "emr-bootstrap.sh",
                             hashlib.sha256(model_file.read_bytes()).hexdigest())
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_S3": str(tmp_path / "s3"),
        "SYSTEM_PIP_LOG": str(tmp_path / "system-pip.log"), "REAL_PYTHON": real_python,
        "ORCHARD_NODE_PYTHON": str(bin_dir / "python3"), "ORCHARD_SUDO": "",
        "ORCHARD_NODE_ROOT": str(tmp_path / "root"), "HOME": str(tmp_path),
    }
    return {"script": script, "env": env, "tmp": tmp_path, "bucket": bucket,
            "root": tmp_path / "root"}


@pytest.fixture
def node(tmp_path, model_file, python39):
    """A node whose bootstrap stops before the environment (no wheelhouse needed)."""
    return make_node(tmp_path, model_file, python39)


def run(node, *args, **env):
    return subprocess.run(["bash", str(node["script"]), *args], capture_output=True, text=True,
                          env={**node["env"], **env}, timeout=900)


def test_script_is_valid_bash_and_installs_nothing_into_the_system_python():
    text = render_bootstrap("abc")
    assert "@@" not in text
    checked = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert text.startswith("#!/bin/bash") and "set -euo pipefail" in text
    assert f'VENV="$ROOT{NODE_VENV}"' in text and '-m venv "$VENV"' in text
    # every pip runs in the venv, from the bucket's wheelhouse only, exactly the lock
    pip_lines = [line for line in text.splitlines() if " -m pip install" in line]
    assert pip_lines and all('"$VENV/bin/python" -m pip' in line and "--no-index" in line
                             for line in pip_lines)
    assert "--require-hashes" in text and "dnf" not in text and "pyspark==" not in text


def test_fails_loudly(node):
    result = run(node, *ARGS, FAKE_AWS_FAIL="1")
    assert result.returncode != 0
    assert "orchard-bootstrap: FAILED" in result.stderr and "403" in result.stderr
    missing = run(node, WHEEL_URI, WHEELHOUSE_URI)
    assert missing.returncode != 0 and "usage:" in missing.stderr


def test_refuses_a_model_with_the_wrong_checksum(node):
    model = node["bucket"] / "models" / MODEL
    model.write_bytes(model.read_bytes()[:-1] + b"x")
    result = run(node, *ARGS)
    assert result.returncode != 0 and "checksum mismatch" in result.stderr
    assert not (node["root"] / NODE_MODEL_DIR.lstrip("/") / MODEL).exists()


@pytest.mark.skipif(sys.version_info[:2] == (3, 9), reason="this interpreter is 3.9")
def test_refuses_a_python_that_is_not_the_wheelhouses(tmp_path, model_file):
    result = run(make_node(tmp_path, model_file, sys.executable), *ARGS)
    assert result.returncode != 0 and "the wheelhouse is for Python 3.9" in result.stderr


@pytest.mark.slow
def test_makes_a_venv_from_the_wheelhouse_without_pypi_and_runs_twice(tmp_path, model_file, python39,
                                                                     x86_64_wheelhouse, wheel):
    node = make_node(tmp_path, model_file, python39)
    (node["bucket"] / "wheelhouse" / "x86_64").symlink_to(x86_64_wheelhouse / "x86_64")
    shutil.copy2(x86_64_wheelhouse / LOCK_NAME, node["bucket"] / "wheelhouse" / LOCK_NAME)
    shutil.copy2(wheel, node["bucket"] / "wheels" / wheel.name)
    no_network = {"PIP_INDEX_URL": "http://127.0.0.1:9/", "HTTPS_PROXY": "http://127.0.0.1:9",
                  "HTTP_PROXY": "http://127.0.0.1:9"}  # --no-index: none is ever needed
    for attempt in (1, 2):
        result = run(node, *ARGS, **no_network)
        assert result.returncode == 0, f"attempt {attempt}: {result.stderr[-3000:]}"
        assert "orchard-bootstrap: done" in result.stderr
    assert "creating the virtual environment" not in result.stderr  # the second run reused it
    assert not Path(node["env"]["SYSTEM_PIP_LOG"]).exists()  # the system Python was never pip'd
    venv_python = node["root"] / NODE_VENV.lstrip("/") / "bin" / "python"
    listing = subprocess.run([str(venv_python), "-c", "import importlib.metadata as m, json; print(json.dumps("
                              "{d.metadata['Name']: d.version for d in m.distributions()}))"],
                             capture_output=True, text=True, check=True).stdout
    installed = {normalize(name): version for name, version in json.loads(listing).items()}
    expected = {**locked_pins(), "orchard": LAYOUT.version}
    assert {name: installed.get(name) for name in expected} == expected
    assert set(installed) - set(expected) <= {"pip", "setuptools"}  # nothing else, no pyspark
    version = subprocess.run([str(venv_python), "-c", "import sys, numpy, onnxruntime, orchard;"
                              "print(sys.version_info[:2], numpy.__version__)"],
                             capture_output=True, text=True, check=True).stdout
    assert version.strip() == f"(3, 9) {locked_pins()['numpy']}"
    installed_model = node["root"] / NODE_MODEL_DIR.lstrip("/") / MODEL
    assert installed_model.read_bytes() == model_file.read_bytes()


def test_bootstrap_command_writes_the_script(tmp_path, capsys):
    target = tmp_path / "out" / "bootstrap.sh"
    assert main(["aws", "bootstrap", "--output", str(target)]) == 0
    assert target.read_text() == render_bootstrap(
        "8fa2195a28ab2e7f2b799de75a5f04451f7033ecbbce15b4d1dc9e45a2d3a703")
    assert os.access(target, os.X_OK)
    capsys.readouterr()
    assert main(["aws", "bootstrap"]) == 0
    assert capsys.readouterr().out == target.read_text()


def test_the_nodes_python_must_be_the_wheelhouses(node):
    """emr-spark-8 clusters pass PYTHON_VERSION 3.11 (5th argument): a node whose Python is
    another version stops before any install, as does a version orchard has no wheelhouse for."""
    result = run(node, *ARGS, "", "3.11")
    assert result.returncode != 0
    assert "the wheelhouse is for Python 3.11" in result.stderr and "Python 3.9" in result.stderr
    assert not (node["root"] / NODE_VENV.lstrip("/")).exists()
    unknown = run(node, *ARGS, "", "2.7")
    assert unknown.returncode != 0 and "unsupported PYTHON_VERSION 2.7" in unknown.stderr
