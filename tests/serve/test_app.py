"""The FastAPI app in-process (Starlette's TestClient), with a tiny random-weights model: every
bad input gets its 4xx and reason, the answer's shape, the page, micro-batching, EXIF."""
from __future__ import annotations

import asyncio
import io
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from orchard.pipeline.preprocess import preprocess
from orchard.serve.app import create_app
from orchard.serve.images import pixels_of
from orchard.serve.model import FruitModel, MicroBatcher
from orchard.serve.settings import ServeSettings
from tests.serve.bad_inputs import SAMPLE_JPEG, cases


@pytest.fixture(scope="module")
def client(tiny_model):
    with TestClient(create_app(ServeSettings(model_dir=str(tiny_model), threads=1)),
                    raise_server_exceptions=False) as test_client:
        yield test_client


def post(client, case):
    if case.content_type is None:
        return client.post("/v1/predict", files={case.field: ("upload.jpg", case.body, "image/jpeg")})
    return client.post("/v1/predict", content=case.body, headers={"Content-Type": case.content_type})


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_bad_input_gets_a_clear_4xx(client, case):
    response = post(client, case)
    assert response.status_code == case.status, response.text
    assert case.words in response.json()["detail"]
    assert "Traceback" not in response.text


def test_malformed_multipart_is_a_400(client):
    response = client.post("/v1/predict", content=b"--x\r\nno headers end",
                           headers={"Content-Type": "multipart/form-data"})
    assert response.status_code == 400 and "boundary" in response.json()["detail"]


def test_answer_for_multipart_and_raw_bytes(client):
    jpeg = SAMPLE_JPEG.read_bytes()
    by_form = client.post("/v1/predict", files={"file": ("banana.jpg", jpeg, "image/jpeg")}).json()
    raw = client.post("/v1/predict", content=jpeg, headers={"Content-Type": "image/jpeg"}).json()
    assert set(by_form) == {"label", "confidence", "sure", "message", "top_k", "model", "elapsed_ms"}
    assert by_form["label"] == raw["label"] and by_form["confidence"] == pytest.approx(raw["confidence"])
    assert [g["label"] for g in by_form["top_k"]][0] == by_form["label"]
    assert len(by_form["top_k"]) == 3 and sorted({g["label"] for g in by_form["top_k"]}) == ["Apple", "Banana", "Cherry"]
    assert sum(g["probability"] for g in by_form["top_k"]) == pytest.approx(1.0, abs=1e-5)
    assert by_form["model"]["classes"] == 3 and len(by_form["model"]["id"]) == 12
    assert by_form["elapsed_ms"] > 0


def test_below_the_threshold_the_answer_says_it_is_not_sure(tiny_model):
    with TestClient(create_app(ServeSettings(model_dir=str(tiny_model), threshold=1.0, threads=1))) as strict:
        answer = strict.post("/v1/predict", content=SAMPLE_JPEG.read_bytes(), headers={"Content-Type": "image/jpeg"}).json()
    assert answer["sure"] is False
    assert answer["message"].startswith(f"Not sure. It looks most like {answer['label']}")
    assert len(answer["top_k"]) == 3


def test_health_model_docs_and_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert info["classes"] == ["Apple", "Banana", "Cherry"] and info["threshold"] == 0.5
    assert {"provenance", "metrics", "input", "id", "sha256"} <= set(info)
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/").text
    assert '<input id="photo" type="file" accept="image/*" capture="environment">' in page
    assert 'name="viewport"' in page and 'fetch("v1/predict"' in page


def test_an_unexpected_failure_is_a_500_without_details(client, monkeypatch):
    def broken(self, pixels):
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(FruitModel, "predict", broken)
    response = client.post("/v1/predict", content=SAMPLE_JPEG.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}


def test_concurrent_requests_are_batched():
    class SlowModel:
        def __init__(self):
            self.batches, self.release = [], threading.Event()

        def predict(self, pixels):
            self.batches.append(len(pixels))
            self.release.wait(5)  # the first call blocks until the others are queued
            return pixels[:, 0, 0, :].astype(np.float32)  # each row tells which image it was

    async def scenario():
        model = SlowModel()
        batcher = MicroBatcher(model, max_batch=4)
        await batcher.start()
        images = [np.full((2, 2, 3), i, dtype=np.uint8) for i in range(6)]
        tasks = [asyncio.ensure_future(batcher.predict(images[0]))]
        await asyncio.sleep(0.1)  # the first image is being inferred: the next 5 queue
        tasks += [asyncio.ensure_future(batcher.predict(image)) for image in images[1:]]
        await asyncio.sleep(0.1)
        model.release.set()
        results = await asyncio.gather(*tasks)
        await batcher.stop()
        return model.batches, results

    batches, results = asyncio.run(scenario())
    assert batches == [1, 4, 1]  # the first alone, then what queued meanwhile, up to max_batch
    assert [int(r[0]) for r in results] == list(range(6))  # every request got its own row


def exif_jpeg(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    stored = Image.new("RGB", (300, 200), (255, 0, 0))
    stored.paste((0, 0, 255), (150, 0, 300, 200))  # left red, right blue, as stored
    rotated = pixels_of(exif_jpeg(stored, 6))  # 6: show it turned 90 degrees clockwise
    assert rotated[10, 112, 0] > 200 and rotated[10, 112, 2] < 60  # red on top after the turn
    assert rotated[210, 112, 2] > 200 and rotated[210, 112, 0] < 60  # blue at the bottom
    upright_already = exif_jpeg(stored, 1)
    assert np.array_equal(pixels_of(upright_already), preprocess(upright_already).array)


def test_corrupt_exif_is_ignored_not_fatal():
    data = bytearray(exif_jpeg(Image.new("RGB", (120, 80), (0, 160, 0)), 6))
    start = data.index(b"Exif\x00\x00") + 6
    data[start:start + 8] = b"\xff" * 8  # the TIFF header of the EXIF block: unreadable
    pixels = pixels_of(bytes(data))
    assert pixels.shape == (224, 224, 3) and pixels[112, 112, 1] > 120


def test_an_answer_over_the_time_limit_is_a_503(tiny_model, monkeypatch):
    def slow(self, pixels):
        threading.Event().wait(0.5)
        return np.full((len(pixels), 3), 1 / 3, dtype=np.float32)

    with TestClient(create_app(ServeSettings(model_dir=str(tiny_model), request_timeout_s=0.2, threads=1))) as hasty:
        monkeypatch.setattr(FruitModel, "predict", slow)
        response = hasty.post("/v1/predict", content=SAMPLE_JPEG.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 503
    assert response.json() == {"detail": "no answer within 0.2 s; try again"}
