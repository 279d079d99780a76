"""`orchard serve`: the fruit classifier as an HTTP service (FastAPI + uvicorn + ONNX Runtime)
with a web page for phones."""
