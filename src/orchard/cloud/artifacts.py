"""What the cluster needs besides the images: orchard's wheel, the bootstrap script, the step's
entry script and the model (the nodes' libraries: orchard.cloud.wheelhouse)."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from orchard import __version__
from orchard.cloud.layout import NODE_MODEL_DIR, NODE_SYSTEM_PYTHON, NODE_VENV
from orchard.errors import OrchardError

DATA_DIR = Path(__file__).resolve().parent / "data"
BOOTSTRAP_TEMPLATE = DATA_DIR / "emr-bootstrap.sh"
ENTRY_SCRIPT = Path(__file__).resolve().parent.parent / "spark" / "entry.py"
# Wheels built with this timestamp are identical when the sources are: `push` then skips them.
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest date a zip file can hold


def render_bootstrap(model_sha256: str = "") -> str:
    """The bootstrap action's text: the template with the nodes' paths and the model checksum."""
    text = BOOTSTRAP_TEMPLATE.read_text(encoding="utf-8")
    for name, value in (("ORCHARD_VERSION", __version__), ("MODEL_DIR", NODE_MODEL_DIR),
                        ("SYSTEM_PYTHON", NODE_SYSTEM_PYTHON), ("VENV", NODE_VENV),
                        ("MODEL_SHA256", model_sha256)):
        text = text.replace(f"@@{name}@@", value)
    if "@@" in text:
        raise OrchardError("internal: unfilled placeholder in the bootstrap template")
    return text


def write_bootstrap(path: Path, model_sha256: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_bootstrap(model_sha256), encoding="utf-8")
    path.chmod(0o755)
    return path


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def find_checkout() -> Optional[Path]:
    """The source checkout orchard runs from (editable install), or None."""
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file() and (root / "src" / "orchard" / "__init__.py").is_file():
        return root
    return None


def _copy_sources(root: Path, target: Path) -> None:
    """The files a wheel is built from, without caches, build outputs or anything else."""
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        if (root / name).is_file():
            shutil.copy2(root / name, target / name)
    shutil.copytree(root / "src", target / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*"))


def build_wheel(out_dir: Path, checkout: Optional[Path] = None) -> Path:
    """Build orchard's wheel from the checkout into `out_dir`; return its path.

    The sources are copied to a temporary folder first, so the checkout gets no build/ or
    egg-info writes. Without build isolation when setuptools and wheel are installed here
    (offline, fast), else with pip's isolated build (fetches setuptools from the index).
    """
    checkout = checkout or find_checkout()
    if checkout is None:
        raise OrchardError("push builds orchard's wheel from a source checkout, and this orchard is "
                           "not installed from one: pass --wheel FILE (e.g. built with "
                           "`pip wheel --no-deps .` in a checkout)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="orchard-wheel-") as tmp:
        staging = Path(tmp) / "orchard"
        _copy_sources(checkout, staging)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                   "--wheel-dir", str(Path(tmp) / "dist"), str(staging)]
        if importlib.util.find_spec("wheel") and importlib.util.find_spec("setuptools"):
            command.insert(4, "--no-build-isolation")
        env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, PIP_NO_INPUT="1")
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        if result.returncode != 0:
            tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-5:])
            raise OrchardError(f"could not build orchard's wheel from {checkout}: {tail}")
        wheels = sorted((Path(tmp) / "dist").glob("orchard-*.whl"))
        if not wheels:
            raise OrchardError(f"pip wheel built no orchard wheel from {checkout}")
        target = out_dir / wheels[-1].name
        shutil.copy2(wheels[-1], target)
    expected = f"orchard-{__version__}-py3-none-any.whl"
    if target.name != expected:
        raise OrchardError(f"built {target.name}, expected {expected}: is the checkout's version "
                           f"the installed one ({__version__})? reinstall with `pip install -e .`")
    return target
