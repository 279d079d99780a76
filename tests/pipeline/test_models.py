import functools
import http.server
import shutil
import threading

import pytest

from orchard.errors import OrchardError
from orchard.pipeline import models
from orchard.pipeline.models import (
    MIRROR_ENV, MODEL_DIR_ENV, PACKAGED_DIR, REGISTRY, get_spec, onnx_session, resolve_model, sha256_of,
)


@pytest.fixture
def no_packaged_model(tmp_path, monkeypatch):
    """As if the package shipped no model: resolution goes on to the cache and the download."""
    monkeypatch.setattr(models, "PACKAGED_DIR", tmp_path / "no-packaged-models")


@pytest.fixture
def http_folder(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a temporary folder; yields (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_registry_matches_the_shared_model(model_file):
    spec = get_spec("mobilenet_v2")
    assert sha256_of(model_file) == spec.sha256
    session = onnx_session(str(model_file))
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    assert inputs[spec.input_name].type == "tensor(uint8)"
    assert inputs[spec.input_name].shape[1:] == [spec.image_size, spec.image_size, 3]
    assert outputs[spec.output_name].shape[1] == spec.feature_dim


def test_session_is_created_once_per_process(model_file):
    assert onnx_session(str(model_file), 1) is onnx_session(str(model_file), 1)


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(OrchardError, match="unknown model 'resnet9000'.*mobilenet_v2"):
        get_spec("resnet9000")


def test_resolution_order_path_then_env_dir(model_file, tmp_path, monkeypatch):
    assert resolve_model("mobilenet_v2", str(model_file))[1] == model_file
    monkeypatch.setenv(MODEL_DIR_ENV, str(model_file.parent))
    assert resolve_model("mobilenet_v2")[1] == model_file


def test_missing_not_onnx_and_wrong_checksum_are_clear_errors(model_file, tmp_path):
    with pytest.raises(OrchardError, match="model file not found"):
        resolve_model("mobilenet_v2", str(tmp_path / "nope.onnx"))
    text = tmp_path / "fake.onnx"
    text.write_text("<html>not a model</html>")
    with pytest.raises(OrchardError, match="not an ONNX model"):
        resolve_model("mobilenet_v2", str(text))
    tampered = tmp_path / "tampered.onnx"
    shutil.copyfile(model_file, tampered)
    with open(tampered, "r+b") as handle:
        handle.seek(5000)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(OrchardError, match="checksum mismatch"):
        resolve_model("mobilenet_v2", str(tampered))


def test_the_default_model_ships_inside_the_package_and_is_checked(monkeypatch, tmp_path):
    spec = REGISTRY["mobilenet_v2"]
    monkeypatch.delenv(MODEL_DIR_ENV)
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/nothing-here")  # a download would fail
    _, path, digest = resolve_model("mobilenet_v2")
    assert path == PACKAGED_DIR / spec.file_name
    assert digest == spec.sha256
    assert "Apache" in (PACKAGED_DIR / "NOTICE.txt").read_text()
    assert not (tmp_path / "cache" / "models").exists()


def test_a_damaged_packaged_model_is_refused(model_file, tmp_path, monkeypatch):
    damaged = tmp_path / "pkg" / REGISTRY["mobilenet_v2"].file_name
    damaged.parent.mkdir()
    damaged.write_bytes(model_file.read_bytes()[:-10] + b"0123456789")
    monkeypatch.setattr(models, "PACKAGED_DIR", damaged.parent)
    monkeypatch.delenv(MODEL_DIR_ENV)
    with pytest.raises(OrchardError, match="checksum mismatch"):
        resolve_model("mobilenet_v2")


def test_download_from_http_into_the_cache_then_reuse(model_file, http_folder, tmp_path, monkeypatch, no_packaged_model):
    folder, url = http_folder
    spec = REGISTRY["mobilenet_v2"]
    shutil.copyfile(model_file, folder / spec.file_name)
    monkeypatch.delenv(MODEL_DIR_ENV)
    monkeypatch.setenv(MIRROR_ENV, url)
    _, path, digest = resolve_model("mobilenet_v2")
    assert path == tmp_path / "cache" / "models" / spec.file_name
    assert digest == spec.sha256
    (folder / spec.file_name).unlink()  # second resolution must come from the cache
    assert resolve_model("mobilenet_v2")[1] == path


def test_download_with_wrong_checksum_keeps_nothing(http_folder, tmp_path, monkeypatch, no_packaged_model):
    folder, url = http_folder
    spec = REGISTRY["mobilenet_v2"]
    (folder / spec.file_name).write_bytes(b"\x08\x07" + b"x" * 1000)
    monkeypatch.delenv(MODEL_DIR_ENV)
    monkeypatch.setenv(MIRROR_ENV, url)
    with pytest.raises(OrchardError, match="expected " + spec.sha256):
        resolve_model("mobilenet_v2")
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_download_failure_says_how_to_work_offline(http_folder, monkeypatch, no_packaged_model):
    _, url = http_folder
    monkeypatch.delenv(MODEL_DIR_ENV)
    monkeypatch.setenv(MIRROR_ENV, url + "/missing")
    with pytest.raises(OrchardError, match="--model-path"):
        resolve_model("mobilenet_v2")
