"""int8 against fp32 on the shared sample: the features' cosine, a linear probe's accuracy, speed.

    python bench/int8_quality.py [--shared ../shared] [--calibrations input,demo] [--speed-images 500]

Features of every image of the sample (24 classes, Training/Test) with the fp32 model and with
its int8 version (orchard.pipeline.quantize, calibrated as `orchard run --precision int8` does:
300 of the input's images evenly spread; `demo`: the packaged demo set instead), in a bare ONNX
Runtime loop (orchard's preprocessing and inference, no Spark). Then, per precision:
    cosine to fp32   mean and min over the images
    probe accuracy   Spark MLlib multinomial logistic regression (as `orchard evaluate`) on the
                     1280 features of Training, accuracy on Test
and the bare loop's images/s, fp32 and int8 timed interleaved on --speed-images images
(--rounds rounds, --threads ONNX Runtime threads, batches of 8); the ratio is int8 / fp32 within
a round, the median round reported. Prints a table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from orchard.pipeline.inference import infer
from orchard.pipeline.models import onnx_session, resolve_model
from orchard.pipeline.preprocess import is_image_name, preprocess
from orchard.pipeline.quantize import CALIBRATION_IMAGES, calibration_of, demo_calibration, int8_model, spread

REPO = Path(__file__).resolve().parents[1]


def image_files(root: Path) -> List[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p.name))


def features(model_file: Path, spec, pixels: List[np.ndarray], threads: int, batch_size: int = 8) -> np.ndarray:
    session = onnx_session(str(model_file), threads)
    return np.stack(infer(session, spec, pixels, batch_size))


def images_per_second(model_file: Path, spec, files: List[Path], threads: int, batch_size: int = 8) -> float:
    """The bare loop of bench/throughput.py: read + preprocess + infer, warmed up session."""
    session = onnx_session(str(model_file), threads)
    session.run(None, {spec.input_name: np.zeros((1, 224, 224, 3), np.uint8)})
    started = time.perf_counter()
    for start in range(0, len(files), batch_size):
        infer(session, spec, [preprocess(f.read_bytes()).array for f in files[start:start + batch_size]], batch_size)
    return len(files) / (time.perf_counter() - started)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def probe_accuracy(spark, x: np.ndarray, labels: List[str], splits: List[str]) -> float:
    """Multinomial logistic regression (orchard evaluate's settings) on Training; Test accuracy."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.linalg import Vectors

    rows = [(Vectors.dense(v.astype(float)), label, split) for v, label, split in zip(x, labels, splits)]
    frame = spark.createDataFrame(rows, ["x", "label", "split"])
    frame = StringIndexer(inputCol="label", outputCol="y").fit(frame).transform(frame).cache()
    train, test = frame.where("split = 'Training'"), frame.where("split = 'Test'")
    model = LogisticRegression(featuresCol="x", labelCol="y", maxIter=200, regParam=1e-3, elasticNetParam=0.0,
                               family="multinomial").fit(train)
    predicted = model.transform(test).select("y", "prediction").collect()
    frame.unpersist()
    return float(np.mean([row.y == row.prediction for row in predicted]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared/ folder")
    parser.add_argument("--calibrations", default="input,demo",
                        help="int8 variants: input (300 of the sample, as orchard run) and/or demo (the demo set)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    parser.add_argument("--speed-images", type=int, default=500, help="images of the speed loops (0: none)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the speed loops")
    parser.add_argument("--no-probe", action="store_true", help="skip the linear probe (no Spark)")
    args = parser.parse_args()

    sample = args.shared / "data" / "fruits-360-sample"
    model_path = args.shared / "models" / "mobilenet_v2_1.0_224.onnx"
    spec, fp32_file, sha256 = resolve_model(None, str(model_path))
    files = image_files(sample)
    relative = [f.relative_to(sample).parts for f in files]  # (split, class, name)
    splits, labels = [parts[0] for parts in relative], [parts[1] for parts in relative]
    pixels = [preprocess(f.read_bytes()).array for f in files]

    models: Dict[str, Path] = {"fp32": fp32_file}
    for variant in args.calibrations.split(","):
        started = time.perf_counter()
        if variant == "input":
            chosen = spread(files, CALIBRATION_IMAGES)
            calibration = calibration_of((f.read_bytes() for f in chosen), f"the sample ({len(chosen)} images)")
        elif variant == "demo":
            calibration = demo_calibration()
        else:
            sys.exit(f"unknown calibration {variant!r}: input or demo")
        int8 = int8_model(spec, fp32_file, sha256, calibration)
        models[f"int8 ({variant})"] = int8.path
        print(f"{variant}: int8 model {int8.path.name} ({int8.calibration_images} images) in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)

    table = {name: features(path, spec, pixels, args.threads) for name, path in models.items()}
    accuracy: Dict[str, float] = {}
    if not args.no_probe:
        from orchard.api import start_spark, stop_spark

        spark = start_spark("local[2]")
        try:
            accuracy = {name: probe_accuracy(spark, x, labels, splits) for name, x in table.items()}
        finally:
            stop_spark(spark)

    speed: Dict[str, List[float]] = {name: [] for name in models}
    speed_files = spread(files, args.speed_images) if args.speed_images else []
    for _ in range(args.rounds if speed_files else 0):
        for name, path in models.items():
            speed[name].append(images_per_second(path, spec, speed_files, args.threads))

    print(f"\n{len(files)} images ({splits.count('Training')} Training, {splits.count('Test')} Test, "
          f"{len(set(labels))} classes); bare loop: {len(speed_files)} images, {args.threads} thread(s), "
          f"batch 8, {args.rounds} interleaved rounds (median)")
    print(f"{'model':<16} {'cos mean':>9} {'cos min':>8} {'probe acc':>10} {'img/s':>7} {'x fp32':>7}")
    for name in models:
        cos = cosines(table[name], table["fp32"])
        rate = statistics.median(speed[name]) if speed[name] else float("nan")
        ratio = (statistics.median(a / b for a, b in zip(speed[name], speed["fp32"]))
                 if speed[name] else float("nan"))
        acc = f"{accuracy[name]:.4f}" if name in accuracy else "-"
        print(f"{name:<16} {cos.mean():>9.4f} {cos.min():>8.4f} {acc:>10} {rate:>7.1f} {ratio:>7.2f}")
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
