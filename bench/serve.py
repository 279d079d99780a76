"""Latency and throughput of `orchard serve` against a bare ONNX Runtime loop, in one run.

    python bench/serve.py MODEL_DIR [--shared ../shared] [--requests 240] [--concurrency 1,4,16]
                                    [--repeat 3] [--max-batch 16] [--json]

The same images (the sample's Test JPEGs, cycled) go through:
- a bare loop, in this process: read bytes -> orchard.pipeline.preprocess -> fruit.onnx, one
  image per call (batch 1), ONNX Runtime with the threads and session options the service uses;
  run just before and just after each concurrency level (the machine's speed drifts; the mean
  of the two is that level's reference);
- `orchard serve MODEL_DIR` (a real process on a free 127.0.0.1 port, one worker), for each
  concurrency c: c client threads, each with its own keep-alive connection, POST the raw JPEG
  bytes (Content-Type image/jpeg) until --requests answers have come back; every answer must
  be 200 (errors are counted). A few untimed requests warm it up first.
--repeat rounds over the levels (default 3); the table shows medians: requests/s, p50/p95/p99
latency (ms, client side), errors (summed), the bare loop's rate, and the two targets:
p50 at concurrency 1 <= 2x the bare loop's per-image time; requests/s at concurrency 16 >= 0.7x
the bare loop's images/s.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from orchard.classify.names import INPUT_NAME, ONNX_FILE
from orchard.pipeline.models import onnx_session
from orchard.pipeline.preprocess import is_image_name, preprocess

REPO = Path(__file__).resolve().parents[1]


def sample_images(shared: Path, count: int) -> List[bytes]:
    files = sorted(p for p in (shared / "data" / "fruits-360-sample" / "Test").rglob("*") if is_image_name(p.name))
    return [files[i % len(files)].read_bytes() for i in range(count)]


def bare_loop(model_file: Path, images: List[bytes], threads: int) -> Dict[str, float]:
    """Read -> preprocess -> inference, batch 1, in this process: images/s and ms per image."""
    session = onnx_session(str(model_file), threads)
    session.run(None, {INPUT_NAME: np.zeros((1, 224, 224, 3), np.uint8)})  # warm-up
    times = []
    started = time.perf_counter()
    for data in images:
        begin = time.perf_counter()
        pixels = preprocess(data).array[None]
        session.run(None, {INPUT_NAME: pixels})
        times.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    return {"images_per_s": len(images) / elapsed, "ms_mean": 1000 * elapsed / len(images),
            "ms_p50": 1000 * statistics.median(times)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(model_dir: Path, port: int, max_batch: int, log) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "orchard", "serve", str(model_dir), "--port", str(port),
                                "--max-batch", str(max_batch)], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"orchard serve exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.3)
    process.terminate()
    raise SystemExit("orchard serve did not start within 120 s")


def load(port: int, images: List[bytes], concurrency: int, total: int) -> Dict[str, float]:
    """`total` POSTs from `concurrency` threads; requests/s, latency percentiles (ms), errors."""
    latencies: List[float] = []
    errors = [0]
    counter = iter(range(total))
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            body = images[index % len(images)]
            begin = time.perf_counter()
            try:
                connection.request("POST", "/v1/predict", body=body, headers={"Content-Type": "image/jpeg"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            elapsed = time.perf_counter() - begin
            with lock:
                latencies.append(elapsed)
                errors[0] += not ok
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ms = 1000 * np.asarray(latencies)
    return {"concurrency": concurrency, "requests": len(latencies), "requests_per_s": len(latencies) / wall,
            "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "errors": errors[0]}


def one_level(port: int, model_file: Path, images: List[bytes], threads: int, concurrency: int) -> Dict:
    """The service at `concurrency` between two bare loops (the machine's speed drifts: each
    level is compared with the bare loops run just before and after it)."""
    before = bare_loop(model_file, images, threads)
    row = load(port, images, concurrency, len(images))
    after = bare_loop(model_file, images, threads)
    bare = {key: (before[key] + after[key]) / 2 for key in before}
    row.update(bare_images_per_s=bare["images_per_s"], bare_ms=bare["ms_mean"],
               p50_ratio=row["p50"] / bare["ms_mean"], throughput_ratio=row["requests_per_s"] / bare["images_per_s"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="folder written by `orchard train`")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared folder (data/)")
    parser.add_argument("--requests", type=int, default=240, help="requests per concurrency level (default 240)")
    parser.add_argument("--concurrency", default="1,4,16", help="concurrency levels (default 1,4,16)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over the levels; medians are shown (default 3)")
    parser.add_argument("--max-batch", type=int, default=16, help="the service's --max-batch (default 16)")
    parser.add_argument("--json", action="store_true", help="also print the raw measurements")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    images = sample_images(args.shared, args.requests)
    threads = os.cpu_count() or 1  # what one service worker uses (the cores / 1 worker)
    model_file = args.model_dir / ONNX_FILE

    rounds: List[List[Dict]] = []
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = start_service(args.model_dir, port, args.max_batch, log)
        try:
            load(port, images[:16], 4, 16)  # warm-up, untimed
            for number in range(args.repeat):
                rounds.append([one_level(port, model_file, images, threads, c) for c in levels])
                print(f"round {number + 1}/{args.repeat} done", file=sys.stderr, flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)

    def median(index: int, key: str) -> float:
        return statistics.median(r[index][key] for r in rounds)

    columns = ("requests_per_s", "p50", "p95", "p99", "bare_images_per_s", "bare_ms")
    print(f"{'':22} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'bare img/s':>10} {'bare ms/img':>11}")
    for index, concurrency in enumerate(levels):
        values = [median(index, key) for key in columns]
        errors = sum(r[index]["errors"] for r in rounds)
        print(f"{'serve, concurrency ' + str(concurrency):22} {args.requests:>8} {values[0]:>7.1f} {values[1]:>7.1f} "
              f"{values[2]:>7.1f} {values[3]:>7.1f} {errors:>6} {values[4]:>10.1f} {values[5]:>11.1f}")
    if 1 in levels:
        print(f"p50 at concurrency 1 / bare per-image time = {median(levels.index(1), 'p50_ratio'):.2f}   (target <= 2)")
    if 16 in levels:
        print(f"req/s at concurrency 16 / bare images/s    = {median(levels.index(16), 'throughput_ratio'):.2f}   "
              "(target >= 0.7)")
    print(f"medians of {args.repeat} rounds; errors summed: {sum(r['errors'] for rs in rounds for r in rs)} (target 0); "
          f"bare loop: read + preprocess + inference, batch 1, {threads} ONNX Runtime threads, run just before and "
          f"after each level; cores: {os.cpu_count()}; service: 1 worker, --max-batch {args.max_batch}")
    if args.json:
        print(json.dumps(rounds, indent=2))


if __name__ == "__main__":
    main()
