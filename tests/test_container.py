"""The container image (Containerfile): built here without any container registry, then run.

1. the base: Debian bookworm from Debian's packages (`debootstrap --variant=minbase`), imported
   as a buildah image; cached (the rootfs tarball under /var/cache/orchard-container, else
   ~/.cache/orchard/container, and the image in buildah's storage), keyed by the base's recipe;
2. the image: `buildah bud --isolation chroot --layers` (its layers cached by buildah), the
   default model served to the build from 127.0.0.1 (the download path, sha256 checked);
3. inside it (`buildah run --isolation chroot`): `orchard --version`, `orchard demo` when the
   package has it, else `orchard run` on a copied subset of the sample, whose run.json is checked.

Needs root, buildah and debootstrap (`.ci/run` installs them); skipped otherwise. Prints the
image's size and the build times.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from orchard import __version__
from tests.conftest import MODEL_DIR
from tests.fixtures.models import TINY_CLASSES
from tests.serve.conftest import start_service, stop_service

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SUITE, DEBIAN_MIRROR, VARIANT = "bookworm", "http://deb.debian.org/debian", "minbase"
BASE_RECIPE = f"debootstrap --variant={VARIANT} {SUITE} {DEBIAN_MIRROR}"
IMAGE = "localhost/orchard:test"
CLASSES, PER_CLASS = ("Banana", "Kiwi", "Lemon"), 4


def tool_missing() -> str:
    if os.geteuid() != 0:
        return "needs root (debootstrap, buildah)"
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    return f"missing {', '.join(missing)} (apt-get install buildah debootstrap)" if missing else ""


if tool_missing():
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason=tool_missing())]


def sh(*args: str, timeout: int = 3600) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def cache_folder() -> Path:
    system = Path("/var/cache/orchard-container")
    try:
        system.mkdir(parents=True, exist_ok=True)
        return system
    except OSError:
        return Path.home() / ".cache" / "orchard" / "container"


def base_image() -> str:
    """The debootstrap-made Debian base as a buildah image (built once, then cached)."""
    key = hashlib.sha256(BASE_RECIPE.encode()).hexdigest()[:12]
    name = f"localhost/orchard-base:{SUITE}-{key}"
    if sh("buildah", "images", "--quiet", "--filter", f"reference={name}").strip():
        return name
    folder = cache_folder() / key
    tarball = folder / "rootfs.tar"
    if not tarball.is_file():
        rootfs = folder / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        sh("debootstrap", f"--variant={VARIANT}", SUITE, str(rootfs), DEBIAN_MIRROR)
        sh("tar", "-C", str(rootfs), "-cf", str(tarball) + ".part", ".")
        os.replace(str(tarball) + ".part", tarball)
        shutil.rmtree(rootfs)
    container = sh("buildah", "from", "scratch").strip()
    try:
        sh("buildah", "add", container, str(tarball), "/")
        sh("buildah", "config", "--env", "LANG=C.UTF-8", "--cmd", "/bin/bash", container)
        sh("buildah", "commit", "--quiet", container, name)
    finally:
        sh("buildah", "rm", container)
    return name


@pytest.fixture(scope="module")
def model_server():
    """The shared model folder over HTTP on 127.0.0.1 (a chroot build shares this network)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(MODEL_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def host_ca_options() -> list:
    """This machine's CA bundle, mounted for pip in the build (needed behind a TLS-intercepting
    proxy, harmless elsewhere)."""
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    if not Path(bundle).is_file():
        return []
    return ["-v", f"{bundle}:/run/host-ca.crt:ro", "--build-arg", "PIP_CA_CERT=/run/host-ca.crt"]


@pytest.fixture(scope="module")
def image(model_server):
    started = time.perf_counter()
    base = base_image()
    based = time.perf_counter()
    sh("buildah", "bud", "--isolation", "chroot", "--layers", "-f", str(ROOT / "Containerfile"),
       "--build-arg", f"BASE={base}", "--build-arg", f"ORCHARD_MODEL_MIRROR={model_server}",
       *host_ca_options(), "-t", IMAGE, str(ROOT))
    built = time.perf_counter()
    size = sh("buildah", "images", "--format", "{{.Size}}", IMAGE).split("\n")[0]
    print(f"\ncontainer: base {based - started:.0f} s, image build {built - based:.0f} s, {IMAGE} {size}")
    return IMAGE


@pytest.fixture
def container(image):
    name = sh("buildah", "from", image).strip()
    sh("buildah", "config", "--env", "SPARK_LOCAL_IP=127.0.0.1", name)
    yield name
    sh("buildah", "rm", name)


def run_in(container: str, *command: str, volumes=(), timeout: int = 900) -> str:
    mounts = [arg for volume in volumes for arg in ("-v", volume)]
    return sh("buildah", "run", "--isolation", "chroot", *mounts, container, "--", *command, timeout=timeout)


def test_the_image_is_debian_bookworm_with_java_17_blas_and_orchard(container):
    assert 'VERSION_CODENAME=bookworm' in run_in(container, "cat", "/etc/os-release")
    java = subprocess.run(["buildah", "run", "--isolation", "chroot", container, "--", "java", "-version"],
                          capture_output=True, text=True)
    assert 'version "17.' in java.stderr
    assert "liblapack.so.3" in run_in(container, "ldconfig", "-p")
    assert run_in(container, "orchard", "--version").strip() == f"orchard {__version__}"
    config = json.loads(sh("buildah", "inspect", "--type", "image", IMAGE))["OCIv1"]["config"]
    assert config["Entrypoint"] == ["orchard"]
    for command in ("run", "serve"):
        assert "usage: orchard " + command in run_in(container, "orchard", command, "--help")


def small_input(sample_dir: Path, root: Path) -> Path:
    """PER_CLASS Training images of each of CLASSES, copied below `root`."""
    for label in CLASSES:
        (root / "Training" / label).mkdir(parents=True)
        for image in sorted((sample_dir / "Training" / label).iterdir())[:PER_CLASS]:
            shutil.copyfile(image, root / "Training" / label / image.name)
    return root


def test_orchard_run_inside_the_image_writes_every_image_once(container, sample_dir, tmp_path):
    data = small_input(sample_dir, tmp_path / "data")
    expected = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.jpg"))
    (tmp_path / "out").mkdir()
    printed = run_in(container, "orchard", "run", "--input", "/data", "--output", "/out/run", "--pca-k", "2",
                     volumes=[f"{data}:/data:ro", f"{tmp_path / 'out'}:/out"])
    record = json.loads((tmp_path / "out" / "run" / "run.json").read_text())
    assert record["counts"]["featurized"] == len(CLASSES) * PER_CLASS and record["counts"]["errors"] == 0
    assert record["counts"]["found"] == len(expected)
    assert record["model"]["name"] == "mobilenet_v2" and record["model"]["feature_dim"] == 1280
    assert record["model"]["file"].startswith("/opt/orchard/")
    assert record["pca"]["k"] == 2 and json.loads(printed)["pca_k"] == 2

    from orchard.table.read import read_features

    rows = read_features(str(tmp_path / "out" / "run"))  # the committed rows, as a reader sees them
    assert sorted(rows.path) == expected  # every image once
    assert {len(f) for f in rows.features} == {1280} and {len(p) for p in rows.pca} == {2}
    assert sorted(set(rows.label)) == sorted(CLASSES)
    assert "demo" in run_in(container, "orchard", "--help")  # the packaged demo set is there too


def test_orchard_serve_inside_the_image_answers_a_prediction(container, tiny_model, sample_dir, tmp_path):
    """`orchard serve` in the image (chroot isolation shares this machine's network) on a model
    folder mounted from here; a photo POSTed from outside gets an answer among its classes."""
    import urllib.request

    in_image = ("buildah", "run", "--isolation", "chroot", "-v", f"{tiny_model}:/model:ro", container, "--", "orchard")
    served = start_service("/model", tmp_path / "serve.log", "--host", "127.0.0.1", wait_s=180, launcher=in_image)
    try:
        photo = sorted((sample_dir / "Test" / "Banana").iterdir())[0].read_bytes()
        request = urllib.request.Request(f"{served.url}/v1/predict", data=photo, headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["label"] in TINY_CLASSES
        assert answer["model"]["classes"] == 3
        probabilities = [entry["probability"] for entry in answer["top_k"]]
        assert {entry["label"] for entry in answer["top_k"]} <= set(TINY_CLASSES)
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0 + 1e-3
        assert 0.0 <= answer["confidence"] <= 1.0
    finally:
        stop_service(served)
    port = served.url.rsplit(":", 1)[1]
    left = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of the service left behind: {left}"
