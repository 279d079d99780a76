"""EMR 7 nodes run Python 3.9: the package must at least compile there."""
import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "orchard"


def python39():
    candidates = [os.environ.get("PYTHON39", "")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    candidates += ["/usr/bin/python3.9", shutil.which("python3.9") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            probe = subprocess.run([candidate, "--version"], capture_output=True, text=True)
            if probe.returncode == 0 and "3.9" in probe.stdout + probe.stderr:
                return candidate
    return None


@pytest.mark.skipif(python39() is None, reason="no Python 3.9 on this machine")
def test_package_compiles_with_python39(tmp_path):
    code = f"import compileall, sys; sys.exit(not compileall.compile_dir({str(PACKAGE)!r}, quiet=1, force=True))"
    result = subprocess.run([python39(), "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
