"""orchard's MobileNetV2 ONNX weights as a file Keras' MobileNetV2 can take (bench/seeds_keras.py).

    python bench/peers/onnx_to_keras_weights.py --model mobilenet_v2_1.0_224.onnx --output W.npz

Keras cannot download its ImageNet weights on a machine without the internet; orchard's model is
the same network (TF's MobileNetV2 1.0 224, batch norms folded into the convolutions). This
writes the 52 feature convolutions, in graph order, as `kernel_<i>` (Keras layout: HxWxInxOut,
or HxWxInx1 for depthwise) and `bias_<i>` (the folded batch norm), for seeds_keras.py --weights,
which loads them with identity batch norms (gamma 1, mean 0, variance 1 - epsilon, beta the
bias). Runs with orchard's Python (needs the `onnx` package).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FEATURE_CONVS = 52  # Keras MobileNetV2(include_top=False) has 52 convolutions; the graph's 53rd is the classifier


def convolutions(model_file: Path):
    """[(kernel in Keras layout, bias)] of the first FEATURE_CONVS Conv nodes of the graph."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_file)).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    found = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        kernel, bias = weights[node.input[1]].astype(np.float32), weights[node.input[2]].astype(np.float32)
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        layout = (2, 3, 0, 1) if group > 1 else (2, 3, 1, 0)  # depthwise: (in, 1, h, w) -> (h, w, in, 1)
        found.append((np.transpose(kernel, layout), bias))
    return found[:FEATURE_CONVS]


def write_npz(model_file: Path, output: Path) -> int:
    """Write the convolutions of `model_file` to `output` (.npz); returns how many."""
    pairs = convolutions(model_file)
    arrays = {}
    for i, (kernel, bias) in enumerate(pairs):
        arrays[f"kernel_{i}"], arrays[f"bias_{i}"] = kernel, bias
    np.savez(output, **arrays)
    return len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="orchard's mobilenet_v2 ONNX file")
    parser.add_argument("--output", type=Path, required=True, help="the .npz file to write")
    args = parser.parse_args()
    print(f"{write_npz(args.model, args.output)} convolutions -> {args.output}")


if __name__ == "__main__":
    main()
