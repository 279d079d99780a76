"""`orchard serve` as a real process on a free 127.0.0.1 port: the sample's Test split through
HTTP, and every bad input."""
from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import SAMPLE
from tests.serve.bad_inputs import cases
from tests.serve.conftest import start_service, stop_service

pytestmark = pytest.mark.slow


def test_test_split_over_http(service):
    images = sorted(p for p in (SAMPLE / "Test").glob("*/*") if p.is_file())
    assert len(images) == 480
    right = 0
    with httpx.Client(base_url=service.url, timeout=60) as client:
        for image in images:
            response = client.post("/v1/predict", files={"file": (image.name, image.read_bytes(), "image/jpeg")})
            assert response.status_code == 200, response.text
            right += response.json()["label"] == image.parent.name
        info = client.get("/v1/model").json()
    assert right / len(images) >= 0.97
    assert len(info["classes"]) == 24 and info["metrics"]["test"]["accuracy"] >= 0.97
    assert info["provenance"]["backbone"]["name"] == "mobilenet_v2"


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_bad_input_over_http(service, case):
    with httpx.Client(base_url=service.url, timeout=60) as client:
        if case.content_type is None:
            response = client.post("/v1/predict", files={case.field: ("upload.jpg", case.body, "image/jpeg")})
        else:
            response = client.post("/v1/predict", content=case.body, headers={"Content-Type": case.content_type})
        assert response.status_code == case.status, response.text
        assert case.words in response.json()["detail"]
        assert "Traceback" not in response.text
        assert client.get("/healthz").status_code == 200  # still up


def test_binds_loopback_by_default(service):
    log = service.log.read_text()
    assert f"Uvicorn running on {service.url}" in log  # 127.0.0.1 unless told otherwise
    assert service.process.poll() is None


def test_each_worker_process_loads_its_own_session(trained_model, tmp_path):
    served = start_service(trained_model, tmp_path / "serve.log", "--workers", "2")
    try:
        image = next((SAMPLE / "Test" / "Kiwi").iterdir())
        with httpx.Client(base_url=served.url, timeout=60) as client:
            answers = [client.post("/v1/predict", content=image.read_bytes(), headers={"Content-Type": "image/jpeg"})
                       for _ in range(4)]
        assert [a.json()["label"] for a in answers] == ["Kiwi"] * 4
        deadline = time.monotonic() + 60
        while served.log.read_text().count("loaded (24 classes) in process") < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        loaded = [line for line in served.log.read_text().splitlines() if "loaded (24 classes) in process" in line]
        assert len({line.rsplit(" ", 1)[-1] for line in loaded}) == 2  # two processes, a session each
    finally:
        assert stop_service(served) == 0
