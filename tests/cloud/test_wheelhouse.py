"""orchard.cloud.wheelhouse: the nodes' lock (every pin, with hashes) and the wheelhouse built
from it with `pip download --platform` for CPython 3.9 on x86_64 and aarch64 (Graviton)."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from orchard.cloud.wheelhouse import (
    ARCHITECTURES, LOCK_FILE, LOCK_FILES, LOCK_NAME, REQUIREMENTS_FILE, build_wheelhouse, lock_file_for,
    lock_text, locked_pins,
    normalize, platform_args, sha256_file, wheel_pin, wheelhouse_files,
)
from orchard.errors import OrchardError
from tests.cloud.conftest import WHEELHOUSE_CACHE

# What `orchard aws push` uploads under s3://B/orchard/wheelhouse/ (plus requirements.txt).
EXPECTED = {
    "x86_64": [
        "coloredlogs-15.0.1-py2.py3-none-any.whl",
        "contourpy-1.3.0-cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "cycler-0.12.1-py3-none-any.whl",
        "flatbuffers-25.12.19-py2.py3-none-any.whl",
        "fonttools-4.60.2-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "humanfriendly-10.0-py2.py3-none-any.whl",
        "importlib_resources-6.5.2-py3-none-any.whl",
        "kiwisolver-1.4.7-cp39-cp39-manylinux_2_12_x86_64.manylinux2010_x86_64.whl",
        "matplotlib-3.9.4-cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "mpmath-1.3.0-py3-none-any.whl",
        "numpy-1.26.4-cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "onnxruntime-1.19.2-cp39-cp39-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "packaging-26.3-py3-none-any.whl",
        "pandas-2.3.3-cp39-cp39-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        "pillow-11.3.0-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "pillow_heif-1.1.1-cp39-cp39-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "protobuf-6.33.6-cp39-abi3-manylinux2014_x86_64.whl",
        "pyarrow-21.0.0-cp39-cp39-manylinux_2_28_x86_64.whl",
        "pyparsing-3.3.3-py3-none-any.whl",
        "python_dateutil-3.0.0-py2.py3-none-any.whl",
        "pytz-2026.6-py2.py3-none-any.whl",
        "pyyaml-6.0.3-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
        "six-1.17.0-py2.py3-none-any.whl",
        "sympy-1.14.0-py3-none-any.whl",
        "tqdm-4.67.1-py3-none-any.whl",
        "tzdata-2026.6-py2.py3-none-any.whl",
        "zipp-3.23.1-py3-none-any.whl",
    ],
    "aarch64": [
        "coloredlogs-15.0.1-py2.py3-none-any.whl",
        "contourpy-1.3.0-cp39-cp39-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "cycler-0.12.1-py3-none-any.whl",
        "flatbuffers-25.12.19-py2.py3-none-any.whl",
        "fonttools-4.60.2-cp39-cp39-manylinux2014_aarch64.manylinux_2_17_aarch64.manylinux_2_28_aarch64.whl",
        "humanfriendly-10.0-py2.py3-none-any.whl",
        "importlib_resources-6.5.2-py3-none-any.whl",
        "kiwisolver-1.4.7-cp39-cp39-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "matplotlib-3.9.4-cp39-cp39-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "mpmath-1.3.0-py3-none-any.whl",
        "numpy-1.26.4-cp39-cp39-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "onnxruntime-1.19.2-cp39-cp39-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
        "packaging-26.3-py3-none-any.whl",
        "pandas-2.3.3-cp39-cp39-manylinux_2_24_aarch64.manylinux_2_28_aarch64.whl",
        "pillow-11.3.0-cp39-cp39-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
        "pillow_heif-1.1.1-cp39-cp39-manylinux_2_26_aarch64.manylinux_2_28_aarch64.whl",
        "protobuf-6.33.6-cp39-abi3-manylinux2014_aarch64.whl",
        "pyarrow-21.0.0-cp39-cp39-manylinux_2_28_aarch64.whl",
        "pyparsing-3.3.3-py3-none-any.whl",
        "python_dateutil-3.0.0-py2.py3-none-any.whl",
        "pytz-2026.6-py2.py3-none-any.whl",
        "pyyaml-6.0.3-cp39-cp39-manylinux2014_aarch64.manylinux_2_17_aarch64.manylinux_2_28_aarch64.whl",
        "six-1.17.0-py2.py3-none-any.whl",
        "sympy-1.14.0-py3-none-any.whl",
        "tqdm-4.67.1-py3-none-any.whl",
        "tzdata-2026.6-py2.py3-none-any.whl",
        "zipp-3.23.1-py3-none-any.whl",
    ],
}


def requirement_pins():
    pins = {}
    for line in REQUIREMENTS_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalize(name)] = version
    return pins


def test_the_lock_pins_every_requirement_with_hashes_and_nothing_the_nodes_must_not_get():
    text = LOCK_FILE.read_text()
    pins = locked_pins()
    assert {name: pins.get(name) for name in requirement_pins()} == requirement_pins()
    assert not {"pyspark", "py4j", "boto3", "botocore"} & set(pins)  # EMR's Spark; S3 through Spark
    # every pin is followed by at least one sha256 (pip's hash-checking mode needs them all)
    lines = text.splitlines()
    pin_lines = [i for i, line in enumerate(lines) if "==" in line]
    assert len(pin_lines) == len(pins)
    assert all(re.fullmatch(r"    --hash=sha256:[0-9a-f]{64}( \\)?", lines[i + 1]) for i in pin_lines)
    # python_version < "3.10" dependencies are there: the lock was resolved by a Python 3.9
    assert {"importlib-resources", "zipp"} <= set(pins)
    assert pins["numpy"].startswith("1.") and int(pins["pandas"].split(".")[0]) < 3


def test_the_spark4_lines_lock_pins_the_same_requirements_for_python311():
    """emr-spark-8 nodes run Python 3.11: their lock has the same top-level pins (one node set),
    3.11 wheels' hashes, and none of the backports a 3.9 needs."""
    lock = LOCK_FILES["3.11"]
    assert lock_file_for("3.11") == lock and lock_file_for("3.9") == LOCK_FILE
    pins = locked_pins(lock)
    assert {name: pins.get(name) for name in requirement_pins()} == requirement_pins()
    assert not {"pyspark", "py4j", "boto3", "botocore", "importlib-resources", "zipp"} & set(pins)
    assert "CPython 3.11 wheel" in lock.read_text().splitlines()[1]
    numpy = re.compile(r"^numpy==\S+ \\\n((?:    --hash=sha256:[0-9a-f]{64}.*\n)+)", re.M)
    hashes_311, hashes_39 = (numpy.search(path.read_text())[1] for path in (lock, LOCK_FILE))
    assert hashes_311 != hashes_39  # the same numpy, built for another CPython
    assert platform_args("x86_64", "3.11")[:7] == ["--only-binary=:all:", "--python-version", "3.11",
                                                   "--implementation", "cp", "--abi", "cp311"]
    with pytest.raises(OrchardError, match="no lock"):
        lock_file_for("3.12")


def test_platform_args_select_cpython39_manylinux_wheels():
    args = platform_args("aarch64")
    assert args[:7] == ["--only-binary=:all:", "--python-version", "3.9", "--implementation", "cp",
                        "--abi", "cp39"]
    assert "manylinux2014_aarch64" in args and "manylinux_2_34_aarch64" in args
    with pytest.raises(OrchardError, match="architecture"):
        platform_args("armv7l")


def fake_wheel(folder: Path, name: str, payload: bytes = b"x") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("payload", payload)
    return path


def test_lock_text_has_one_hash_per_architectures_wheel(tmp_path):
    x86 = [fake_wheel(tmp_path / "x", "numpy-1.26.4-cp39-cp39-manylinux2014_x86_64.whl", b"x86"),
           fake_wheel(tmp_path / "x", "tqdm-4.67.1-py3-none-any.whl")]
    arm = [fake_wheel(tmp_path / "a", "numpy-1.26.4-cp39-cp39-manylinux2014_aarch64.whl", b"arm"),
           fake_wheel(tmp_path / "a", "tqdm-4.67.1-py3-none-any.whl")]
    text = lock_text({"x86_64": x86, "aarch64": arm})
    numpy_block = text[text.index("numpy==1.26.4"):text.index("tqdm==")]
    assert sorted(re.findall(r"sha256:(\w+)", numpy_block)) == sorted(sha256_file(p) for p in (x86[0], arm[0]))
    assert len(re.findall(r"sha256:", text[text.index("tqdm=="):])) == 1  # one pure wheel, one hash
    with pytest.raises(OrchardError, match="resolved differently"):
        lock_text({"x86_64": x86, "aarch64": arm[:1]})
    assert wheel_pin(x86[0]) == ("numpy", "1.26.4")


def test_wheelhouse_files_need_the_lock_and_both_architectures(stand_in_wheelhouse):
    files = wheelhouse_files(stand_in_wheelhouse)
    assert [relative for relative, _ in files] == [
        LOCK_NAME, "x86_64/tqdm-4.67.1-py3-none-x86_64.whl", "aarch64/tqdm-4.67.1-py3-none-aarch64.whl"]
    for path in (stand_in_wheelhouse / "aarch64").iterdir():
        path.unlink()
    with pytest.raises(OrchardError, match="no wheels for aarch64"):
        wheelhouse_files(stand_in_wheelhouse)


@pytest.mark.slow
def test_the_wheelhouse_built_here_holds_exactly_the_locked_wheels(tmp_path):
    """pip download --platform, for both architectures, checked against the lock's hashes
    (downloaded once into the wheelhouse cache)."""
    folder = build_wheelhouse(cache=WHEELHOUSE_CACHE)
    files = wheelhouse_files(folder)
    for arch in ARCHITECTURES:
        assert sorted(p.name for p in (folder / arch).glob("*.whl")) == EXPECTED[arch]
        assert {wheel_pin(Path(name))[0] for name in EXPECTED[arch]} == set(locked_pins())
    assert (folder / LOCK_NAME).read_text() == LOCK_FILE.read_text()
    size = sum(path.stat().st_size for _, path in files)
    assert 150e6 < size < 300e6, size  # ~220 MB: what push uploads once per lock
