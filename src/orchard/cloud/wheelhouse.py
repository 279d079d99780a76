"""The nodes' Python libraries as files: a lock with hashes, and a wheelhouse built from it.

EMR 7 nodes run Python 3.9 (CPython, glibc 2.34) on x86_64 or aarch64 (Graviton); the Spark 4
line (emr-spark-8) runs Python 3.11 there: one lock per Python (LOCK_FILES). The node set
is `data/emr-requirements.txt` (what orchard imports on a node, not pyspark: EMR has Spark, nor
boto3: the step reads S3 through Spark). `data/emr-constraints.txt` locks it: every distribution
installed, transitive ones included, `name==version` with the sha256 of its wheel for each
architecture. `orchard aws push` uploads the wheelhouse (those wheels, one folder per
architecture, and the lock) so the bootstrap installs with `--no-index --require-hashes`: the
nodes need no PyPI.

    python -m orchard.cloud.wheelhouse --lock [--python 3.11]  # re-resolve a lock (network: PyPI)
    python -m orchard.cloud.wheelhouse [--python 3.11]         # build (or find) its wheelhouse
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from orchard.errors import OrchardError
from orchard.paths import cache_root

DATA_DIR = Path(__file__).resolve().parent / "data"
REQUIREMENTS_FILE = DATA_DIR / "emr-requirements.txt"
LOCK_FILE = DATA_DIR / "emr-constraints.txt"
# the nodes' Python (major.minor) -> its lock: EMR 7 and the Spark 4 line (emr-spark-8)
LOCK_FILES = {"3.9": LOCK_FILE, "3.11": DATA_DIR / "emr-constraints-py311.txt"}
LOCK_NAME = "requirements.txt"  # the lock's name inside a wheelhouse
ARCHITECTURES = ("x86_64", "aarch64")  # `uname -m` on EMR's instance types
NODE_PYTHON_VERSION = "3.9"
# Amazon Linux 2023 has glibc 2.34: every manylinux tag up to it. pip 23 does not widen a tag
# given with --platform to the older ones, so all are listed.
MANYLINUX = ("manylinux2014", "manylinux_2_17", "manylinux_2_24", "manylinux_2_27",
             "manylinux_2_28", "manylinux_2_31", "manylinux_2_34")
PYPI = "https://pypi.org/simple"
WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-")


def normalize(name: str) -> str:
    """PEP 503 name: 'PyYAML' and 'python_dateutil' -> 'pyyaml', 'python-dateutil'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_file_for(python: str) -> Path:
    """The lock of the nodes running Python `python` ('3.9' or '3.11')."""
    if python not in LOCK_FILES:
        raise OrchardError(f"no lock for nodes with Python {python}: one of {', '.join(LOCK_FILES)}")
    return LOCK_FILES[python]


def platform_args(arch: str, python: str = NODE_PYTHON_VERSION) -> List[str]:
    """pip's options selecting CPython `python` wheels for a Linux node of `arch`."""
    if arch not in ARCHITECTURES:
        raise OrchardError(f"unknown node architecture {arch!r}: one of {', '.join(ARCHITECTURES)}")
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp",
            "--abi", "cp" + python.replace(".", "")]
    for tag in MANYLINUX:
        args += ["--platform", f"{tag}_{arch}"]
    return args


def find_python(version: str = NODE_PYTHON_VERSION) -> Optional[str]:
    """A CPython `version` here (a nodes' version, e.g. '3.9'): this one, $ORCHARD_PYTHON39 (for
    3.9; $ORCHARD_PYTHON311 for 3.11), pyenv's, or pythonX.Y on PATH (not a pyenv shim: it
    answers only where that version is selected); None if none."""
    if "%d.%d" % sys.version_info[:2] == version:
        return sys.executable
    configured = os.environ.get("ORCHARD_PYTHON" + version.replace(".", ""))
    if configured:
        return configured
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted(root.glob(f"versions/{version}.*/bin/python{version}"))
    if found:
        return str(found[-1])
    on_path = shutil.which(f"python{version}")
    return on_path if on_path and "/shims/" not in on_path else None


def find_python39() -> Optional[str]:
    """A CPython 3.9 here (EMR 7 nodes' version): see find_python."""
    return find_python("3.9")


def _pip_download(arguments: Sequence[str], dest: Path, python: str = sys.executable) -> None:
    """`pip download` from PyPI alone (--isolated: this machine's pip settings and local wheel
    folders are ignored, so hashes are PyPI's), run by `python`."""
    command = [python, "-m", "pip", "download", "--isolated", "--disable-pip-version-check",
               "--no-input", "--index-url", os.environ.get("ORCHARD_PIP_INDEX_URL", PYPI),
               "--dest", str(dest), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-4:])
        raise OrchardError(f"pip download of the nodes' wheels failed: {tail}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_pin(path: Path) -> Tuple[str, str]:
    """(normalized name, version) of a wheel file name."""
    match = WHEEL_NAME.match(path.name)
    if not match or path.suffix != ".whl":
        raise OrchardError(f"not a wheel: {path.name}")
    return normalize(match["name"]), match["version"]


def lock_text(wheels: Dict[str, List[Path]], python: str = NODE_PYTHON_VERSION) -> str:
    """The lock: every distribution of `wheels` ({arch: [wheel files]}), pinned, with hashes.

    Raises OrchardError when the architectures resolved to different distributions or versions.
    """
    pins: Dict[str, Dict[Tuple[str, str], List[str]]] = {}
    for arch, files in wheels.items():
        pins[arch] = {}
        for path in files:
            pins[arch].setdefault(wheel_pin(path), []).append(sha256_file(path))
    sets = {arch: sorted(found) for arch, found in pins.items()}
    first = next(iter(sets.values()))
    if any(found != first for found in sets.values()):
        raise OrchardError(f"the architectures resolved differently: {sets}")
    lines = ["# The EMR nodes' Python libraries, locked: every distribution installed (transitive",
             f"# ones included) with the sha256 of its CPython {python} wheel for x86_64 and aarch64.",
             "# Generated from emr-requirements.txt by `python -m orchard.cloud.wheelhouse --lock"
             + ("`;" if python == NODE_PYTHON_VERSION else f" --python {python}`;"),
             "# the bootstrap installs exactly this (--no-index --require-hashes)."]
    for name, version in first:
        hashes = sorted({h for arch in pins for h in pins[arch][(name, version)]})
        lines.append(f"{name}=={version} \\")
        lines += [f"    --hash=sha256:{h}" + (" \\" if i < len(hashes) - 1 else "")
                  for i, h in enumerate(hashes)]
    return "\n".join(lines) + "\n"


def lock(requirements: Path = REQUIREMENTS_FILE, target: Optional[Path] = None,
         python: str = NODE_PYTHON_VERSION) -> Path:
    """Resolve `requirements` for nodes running Python `python` (each architecture) and write
    the lock to `target` (default: that Python's lock file).

    pip resolves with a Python of that version: it evaluates the dependencies' markers (`python_version <
    "3.10"`: importlib-resources, zipp...) with the interpreter running it, not with
    --python-version. (Markers on the machine, `platform_machine`, are still this machine's:
    the architectures must resolve to the same set, which is checked.) Raises OrchardError
    without a Python of that version.
    """
    target = target or lock_file_for(python)
    interpreter = find_python(python)
    if interpreter is None:
        raise OrchardError(f"locking the nodes' libraries needs a Python {python}: set ORCHARD_PYTHON"
                           f"{python.replace('.', '')} or install one (e.g. pyenv install {python})")
    with tempfile.TemporaryDirectory(prefix="orchard-lock-") as tmp:
        wheels = {}
        for arch in ARCHITECTURES:
            folder = Path(tmp) / arch
            _pip_download([*platform_args(arch, python), "--requirement", str(requirements)], folder,
                          interpreter)
            wheels[arch] = sorted(folder.glob("*.whl"))
        target.write_text(lock_text(wheels, python), encoding="utf-8")
    return target


def locked_pins(lock_file: Path = LOCK_FILE) -> Dict[str, str]:
    """{normalized name: version} of the lock."""
    pins = {}
    for line in lock_file.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", line)
        if match:
            pins[normalize(match[1])] = match[2]
    return pins


def lock_digest(lock_file: Path = LOCK_FILE) -> str:
    return sha256_file(lock_file)[:16]


def default_cache() -> Path:
    """Where wheelhouses are kept between pushes and test runs ($ORCHARD_WHEELHOUSE_CACHE)."""
    configured = os.environ.get("ORCHARD_WHEELHOUSE_CACHE")
    return Path(configured) if configured else cache_root() / "wheelhouse"


def build_wheelhouse(lock_file: Path = LOCK_FILE, cache: Optional[Path] = None,
                     architectures: Sequence[str] = ARCHITECTURES, python: str = NODE_PYTHON_VERSION) -> Path:
    """The wheelhouse of `lock_file` (for nodes running Python `python`): <folder>/requirements.txt
    and <folder>/<arch>/*.whl.

    Downloaded from PyPI once per lock (checked against its hashes) into the cache
    (`default_cache()`/<lock digest>/) and reused. Raises OrchardError when pip fails.
    """
    folder = (cache or default_cache()) / lock_digest(lock_file)
    for arch in architectures:
        done = folder / arch / ".complete"
        if done.is_file():
            continue
        partial = folder / f".{arch}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _pip_download([*platform_args(arch, python), "--no-deps", "--require-hashes",
                       "--requirement", str(lock_file)], partial)
        shutil.rmtree(folder / arch, ignore_errors=True)
        partial.rename(folder / arch)
        done.write_text("", encoding="utf-8")
    shutil.copy2(lock_file, folder / LOCK_NAME)
    return folder


def wheelhouse_files(folder: Path) -> List[Tuple[str, Path]]:
    """(relative posix path, path) of a wheelhouse's lock and wheels, sorted."""
    lock_path = folder / LOCK_NAME
    if not lock_path.is_file():
        raise OrchardError(f"not a wheelhouse (no {LOCK_NAME}): {folder}")
    files = [(LOCK_NAME, lock_path)]
    for arch in ARCHITECTURES:
        wheels = sorted((folder / arch).glob("*.whl"))
        if not wheels:
            raise OrchardError(f"the wheelhouse {folder} has no wheels for {arch}")
        files += [(f"{arch}/{path.name}", path) for path in wheels]
    return files


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchard.cloud.wheelhouse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lock", action="store_true", help="rewrite the lock from PyPI")
    parser.add_argument("--python", default=NODE_PYTHON_VERSION, choices=sorted(LOCK_FILES),
                        help=f"the nodes' Python (default {NODE_PYTHON_VERSION}: EMR 7; 3.11: emr-spark-8)")
    args = parser.parse_args(argv)
    if args.lock:
        print(lock(python=args.python))
    else:
        print(build_wheelhouse(lock_file_for(args.python), python=args.python))
    return 0


if __name__ == "__main__":
    sys.exit(main())
