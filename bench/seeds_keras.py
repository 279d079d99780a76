"""The seeds' pipeline, as a baseline: Keras MobileNetV2 in a Spark pandas UDF, MLlib PCA, Parquet.

    <keras venv>/bin/python bench/seeds_keras.py --input ROOT --output DIR [--weights FILE]
    (the venv: bash bench/peers/setup.sh keras)

What the seeds' notebook did, on Spark `local[2]`:
 1. the images read with Spark's binaryFile source (recursive, *.jpg), `label` from the path;
 2. Keras MobileNetV2 (include_top=False, pooling='avg': 1280 features) built on the driver,
    its weights broadcast (`sc.broadcast(model.get_weights())`), the model rebuilt from them
    once per Python worker in an iterator pandas UDF that decodes (Pillow, resized to 224x224,
    `preprocess_input`) and calls `model.predict` on each Arrow batch;
 3. features written as Parquet (path, label, features), read back, MLlib PCA fitted on all
    components to choose k (95% of the variance), fitted again with k, the projection
    written as Parquet.

ImageNet weights: Keras downloads them on first use, which this machine cannot do. The script
looks for them in --weights FILE (Keras' file, or the .npz that bench/peers/onnx_to_keras_weights.py
makes from orchard's ONNX model: the same network, features within a cosine of 0.9999 of
orchard's on the same pixels), then Keras' cache (~/.keras/models/); without them the model
has random weights (same architecture, so the same compute cost per image; the features then
mean nothing) and the script says so on stderr and in its last line (`weights=random`).
Prints a last line `PEER keras images=N total=S weights=imagenet|imagenet-from-onnx|random`.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pandas as pd

KERAS_WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"  # Keras' file name


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="dataset root: <root>/<Split>/<Class>/<image>")
    parser.add_argument("--output", type=Path, required=True, help="output folder (replaced)")
    parser.add_argument("--weights", type=Path,
                        help=f"ImageNet weights: Keras' file ({KERAS_WEIGHTS}), or the .npz that "
                             "bench/peers/onnx_to_keras_weights.py makes from orchard's ONNX model")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2], as the seeds)")
    parser.add_argument("--arrow-batch", type=int, default=256,
                        help="rows per Arrow batch given to the UDF (default 256)")
    parser.add_argument("--variance", type=float, default=0.95, help="PCA: variance to keep (default 0.95)")
    return parser.parse_args()


def imagenet_weights(given: Optional[Path]) -> Optional[Path]:
    """The ImageNet weights file if there is one here (--weights, then Keras' cache), else None."""
    candidates = [given] if given else []
    candidates.append(Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / KERAS_WEIGHTS)
    return next((path for path in candidates if path and path.is_file()), None)


def build_model(weights: Optional[str]):
    """Keras MobileNetV2, 224x224x3 in, 1280 global-average-pooled features out; `weights`: a
    Keras weights file, an .npz of onnx_to_keras_weights.py, or None (random)."""
    from tensorflow.keras.applications import MobileNetV2

    keras_file = weights if weights and not weights.endswith(".npz") else None
    model = MobileNetV2(input_shape=(224, 224, 3), include_top=False, pooling="avg", weights=keras_file)
    if weights and weights.endswith(".npz"):
        load_folded(model, np.load(weights))
    model.trainable = False
    return model


def load_folded(model, arrays) -> None:
    """Set the convolutions from onnx_to_keras_weights.py's arrays (batch norms folded in): each
    convolution gets its kernel, the batch norm after it becomes `+ bias`."""
    from tensorflow.keras import layers

    convs = [layer for layer in model.layers if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D))]
    norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    if len(convs) != len(norms) or len(convs) != len(arrays.files) // 2:
        raise SystemExit(f"{len(convs)} convolutions, {len(norms)} batch norms, {len(arrays.files) // 2} arrays")
    for i, (conv, norm) in enumerate(zip(convs, norms)):
        kernel, bias = arrays[f"kernel_{i}"], arrays[f"bias_{i}"]
        conv.set_weights([kernel])
        ones, zeros = np.ones_like(bias), np.zeros_like(bias)
        norm.set_weights([ones, bias, zeros, ones - norm.epsilon])


def main() -> None:
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers run this venv's Python (tensorflow)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    started = time.perf_counter()
    from pyspark.ml.feature import PCA
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    spark = (SparkSession.builder.master(args.master).appName("seeds-keras")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.arrow_batch))
             .config("spark.driver.memory", "4g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")

    weights_file = imagenet_weights(args.weights)
    if weights_file is None:
        print("seeds_keras: no ImageNet weights here (Keras cannot download them offline): RANDOM "
              "weights, same architecture and compute cost; the features mean nothing", file=sys.stderr)
    model = build_model(str(weights_file) if weights_file else None)
    broadcast_weights = spark.sparkContext.broadcast(model.get_weights())

    @pandas_udf("array<float>")
    def featurize(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        from PIL import Image
        from tensorflow.keras.applications.mobilenet_v2 import preprocess_input

        worker_model = build_model(None)
        worker_model.set_weights(broadcast_weights.value)
        for contents in batches:
            pixels = np.stack([np.asarray(Image.open(io.BytesIO(c)).convert("RGB").resize((224, 224)),
                                          dtype=np.float32) for c in contents])
            predictions = worker_model.predict(preprocess_input(pixels), verbose=0)
            yield pd.Series([row.astype(np.float32) for row in predictions])

    images = (spark.read.format("binaryFile").option("pathGlobFilter", "*.jpg")
              .option("recursiveFileLookup", "true").load(str(args.input.resolve())))
    images = images.withColumn("label", F.element_at(F.split("path", "/"), -2))
    shutil.rmtree(args.output, ignore_errors=True)
    features_dir, pca_dir = str(args.output / "features"), str(args.output / "pca")
    (images.repartition(spark.sparkContext.defaultParallelism)
     .select("path", "label", featurize("content").alias("features"))
     .write.parquet(features_dir))

    features = spark.read.parquet(features_dir).withColumn("vector", array_to_vector("features"))
    full = PCA(k=min(1280, features.count()), inputCol="vector", outputCol="pca").fit(features)
    k = int(np.searchsorted(np.cumsum(full.explainedVariance.toArray()), args.variance) + 1)
    reduced = PCA(k=k, inputCol="vector", outputCol="pca").fit(features)
    (reduced.transform(features).select("path", "label", vector_to_array("pca").alias("pca"))
     .write.parquet(pca_dir))
    images_done = spark.read.parquet(features_dir).count()
    spark.stop()
    print(f"seeds_keras: k={k} components for {args.variance:.0%} of the variance")
    weights = "random" if weights_file is None else "imagenet-from-onnx" if weights_file.suffix == ".npz" else "imagenet"
    print(f"PEER keras images={images_done} total={time.perf_counter() - started:.3f} weights={weights}",
          flush=True)


if __name__ == "__main__":
    main()
