"""tests/conftest.py: without the shared model, the tests that need it are skipped, the others run."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PROBE = '''
from conftest import DATA, MODEL_FILE


def test_with_the_model_fixture(model_file):
    assert model_file.is_file()


def test_with_the_sample_fixture(sample_dir):
    assert sample_dir.is_dir()


def test_naming_a_shared_path():
    assert (DATA / "x").exists()


def test_without_shared_files():
    assert 1 + 1 == 2
'''


def test_a_missing_shared_model_skips_only_the_tests_that_need_it(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    # PYTHONPATH: the conftest registers plugins and fixtures from the repository's tests package
    env = {"ORCHARD_SHARED_DIR": str(tmp_path / "no-shared-folder"), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                             str(tmp_path / "test_probe.py")],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 3 skipped" in result.stdout, result.stdout
    assert "missing the shared model" in result.stdout
