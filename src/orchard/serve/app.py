"""The HTTP service: a FastAPI app answering "which fruit is this?".

    POST /v1/predict   multipart field `file`, or raw image bytes (Content-Type image/*)
                       -> {label, confidence, sure, message, top_k: [{label, probability}],
                           model: {id, classes}, elapsed_ms}
    GET  /v1/model     classes, metrics, provenance;   GET /healthz;   GET / (the web page);
    GET  /docs         OpenAPI docs

One ONNX Runtime session per worker process, loaded when the worker starts (the lifespan).
Bad input is a 4xx with a reason ({"detail": ...}), never a 500; an unexpected failure is a
500 with no details (the traceback goes to the server's log only). Nothing is written to disk:
uploads are read into memory, up to `max_body_bytes`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Dict, Optional

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from orchard.serve.images import BadInput, form_parts, pixels_of
from orchard.serve.model import FruitModel, MicroBatcher
from orchard.serve.settings import SETTINGS_ENV, ServeSettings

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
FIELD = "file"  # the multipart field of the photo
RAW_TYPES = ("image/", "application/octet-stream")  # Content-Types of a raw image body


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


async def read_body(request, limit: int) -> bytes:
    """The request body, at most `limit` bytes (BadInput 413 beyond), in memory."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_bytes = int(declared)
        except ValueError:
            raise BadInput(400, f"invalid Content-Length {declared!r}") from None
        if declared_bytes > limit:
            raise BadInput(413, f"upload of {declared_bytes} bytes is over the limit of {limit} bytes")
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise BadInput(413, f"upload is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def image_bytes(body: bytes, content_type: str) -> bytes:
    """The image in a request: the multipart field `file`, or the raw body. Raises BadInput."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        parts = form_parts(body, content_type)
        if FIELD not in parts:
            got = ", ".join(repr(name) for name in parts) or "none"
            raise BadInput(422, f"no form field {FIELD!r} in the upload (fields: {got}); send the photo as {FIELD!r}")
        return parts[FIELD][1]
    if kind.startswith(RAW_TYPES):
        return body
    if not body:
        raise BadInput(400, "empty request: send a photo as multipart field 'file' or raw bytes with "
                            "Content-Type image/*")
    raise BadInput(415, f"unsupported Content-Type {kind or '(none)'!r}: send multipart/form-data with a "
                        f"field {FIELD!r}, or raw image bytes with Content-Type image/*")


def answer(model: FruitModel, probabilities, settings: ServeSettings, started: float) -> Dict[str, Any]:
    top = model.top(probabilities, max(1, settings.top_k))
    label, confidence = top[0]
    sure = confidence >= settings.threshold
    message = label if sure else (f"Not sure. It looks most like {label} ({confidence:.0%}), "
                                  f"or {', '.join(name for name, _ in top[1:]) or 'nothing else'}.")
    return {
        "label": label,
        "confidence": round(confidence, 6),
        "sure": sure,
        "message": message,
        "top_k": [{"label": name, "probability": round(p, 6)} for name, p in top],
        "model": {"id": model.id, "classes": len(model.classes)},
        "elapsed_ms": round(1000 * (time.perf_counter() - started), 2),
    }


PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": [FIELD], "properties": {
                FIELD: {"type": "string", "format": "binary", "description": "a photo (JPEG, PNG)"}}}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {str(code): {"description": text} for code, text in (
        (400, "empty upload or malformed form"), (408, "upload not received in time"),
        (413, "upload over the size limit, or an image of too many pixels"),
        (415, "not an image, or an unsupported Content-Type"),
        (422, "no field 'file', or a corrupt/truncated image"), (503, "no answer in time"))},
}


def create_app(settings: ServeSettings) -> FastAPI:
    """The FastAPI app for `settings`; the model is loaded when the app starts (lifespan)."""
    state: Dict[str, Any] = {}
    page = (STATIC / "index.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app):
        model = FruitModel(Path(settings.model_dir), settings.onnx_threads(), settings.precision)
        model.warm_up()
        batcher = MicroBatcher(model, settings.max_batch)
        await batcher.start()
        state.update(model=model, batcher=batcher)
        log.info("model %s loaded (%d classes) in process %d", model.id, len(model.classes), os.getpid())
        yield
        await batcher.stop()

    app = FastAPI(title="orchard: which fruit is this?", version="1", lifespan=lifespan,
                  description="Photograph a fruit, learn what it is. POST a photo to /v1/predict.")

    @app.exception_handler(Exception)
    async def unexpected(request, exc):  # no stack trace leaves the server
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error(500, "internal error")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/healthz", summary="liveness: the model is loaded")
    async def healthz() -> Dict[str, Any]:
        return {"status": "ok", "model": state["model"].id}

    @app.get("/v1/model", summary="the model: classes, metrics, provenance")
    async def model_info() -> Dict[str, Any]:
        return {**state["model"].info, "threshold": settings.threshold}

    @app.post("/v1/predict", summary="which fruit is this?", openapi_extra=PREDICT_OPENAPI)
    async def predict(request: Request):
        started = time.perf_counter()
        model, batcher = state["model"], state["batcher"]
        deadline = started + settings.request_timeout_s
        try:
            try:
                body = await asyncio.wait_for(read_body(request, settings.max_body_bytes), settings.request_timeout_s)
            except asyncio.TimeoutError:
                return error(408, f"the upload was not received within {settings.request_timeout_s:g} s")
            data = image_bytes(body, request.headers.get("content-type", ""))
            pixels = await asyncio.to_thread(pixels_of, data, model.size)
            try:
                probabilities = await asyncio.wait_for(batcher.predict(pixels), max(0.001, deadline - time.perf_counter()))
            except asyncio.TimeoutError:
                return error(503, f"no answer within {settings.request_timeout_s:g} s; try again")
        except BadInput as bad:
            return error(bad.status, bad.message)
        return answer(model, probabilities, settings, started)

    return app


def app_from_environment():
    """uvicorn's factory in each worker process: the app for $ORCHARD_SERVE_SETTINGS (JSON)."""
    if not logging.getLogger().handlers:  # a worker process started by uvicorn: orchard's log format
        logging.basicConfig(level=logging.INFO, format="%(asctime)s orchard %(levelname)s %(message)s",
                            datefmt="%H:%M:%S")
    text: Optional[str] = os.environ.get(SETTINGS_ENV)
    if not text:
        raise RuntimeError(f"${SETTINGS_ENV} is not set: start the service with `orchard serve MODEL_DIR`")
    return create_app(ServeSettings(**json.loads(text)))
