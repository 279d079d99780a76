"""`orchard serve` as a real process on a free 127.0.0.1 port: the sample's Test split through
HTTP, and every bad input."""
from __future__ import annotations

import httpx
import pytest

from tests.conftest import SAMPLE
from tests.serve.bad_inputs import cases

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


def test_binds_loopback_and_leaves_no_trace_in_answers(service):
    log = service.log.read_text()
    assert f"Uvicorn running on {service.url}" in log  # 127.0.0.1 unless told otherwise
    assert service.process.poll() is None
