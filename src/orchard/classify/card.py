"""The model card (MODEL_DIR/README.md) of a trained fruit classifier, from its metrics."""
from __future__ import annotations

from typing import Any, Dict

from orchard.classify.names import CONFUSION_PNG, INPUT_NAME, METRICS_FILE, ONNX_FILE, OUTPUT_NAME


def model_card(metrics: Dict[str, Any]) -> str:
    """Markdown text: what the model is, how it was made, how good it is, how to use it."""
    provenance = metrics["model"]["provenance"]
    backbone, pca, run = provenance["backbone"], provenance["pca"], provenance["run"]
    test = metrics["test"]
    chain = f"{backbone['name']} features ({backbone['feature_dim']})"
    if pca:
        chain += f" -> PCA ({pca['k']} components, explained variance {pca['explained_variance']})"
    left_out = metrics["left_out_classes"]["classes"]
    lines = [
        "# Fruit classifier (orchard)",
        "",
        f"`{ONNX_FILE}` (sha256 `{metrics['model']['sha256']}`): one ONNX graph, input `{INPUT_NAME}` "
        "uint8 RGB pixels [N, 224, 224, 3] (decoded, converted to RGB and resized to 224x224 with bilinear "
        f"filtering as `orchard.pipeline.preprocess` does), output `{OUTPUT_NAME}` float32 [N, "
        f"{len(metrics['classes'])}] in the order of the class list below.",
        "",
        f"Chain: pixels -> {chain} -> multinomial logistic regression (Spark MLlib, regParam "
        f"{metrics['cross_validation']['best_reg_param']:g} chosen by {metrics['cross_validation']['folds']}-fold "
        "cross-validation on log loss) -> softmax.",
        "",
        "## Data and provenance",
        "",
        f"- run: `{run['uri']}`, features table version {run.get('table_version')} (Spark app "
        f"{run['app_id']}, started {run['started_at']})",
        f"- backbone sha256: `{backbone['sha256']}`",
        f"- trained on `{metrics['on']}` of {metrics['rows']['train']} `{metrics['splits']['train']}` images, "
        f"{metrics['trained_at']}, orchard {metrics['orchard_version']}",
        f"- left out (fewer than {metrics['left_out_classes']['min_images']} training images): "
        + (", ".join(f"{c} ({n})" for c, n in left_out.items()) if left_out else "none"),
        "",
        "## Evaluation",
        "",
        f"On {metrics['rows']['test']} `{metrics['splits']['test']}` images: accuracy **{test['accuracy']:.4f}**, "
        f"macro-F1 **{test['macro_f1']:.4f}**. Per class precision/recall in `{METRICS_FILE}`; the most "
        f"confused classes in `{CONFUSION_PNG}`.",
        "",
        "## Classes",
        "",
        ", ".join(metrics["classes"]),
        "",
        "## Use",
        "",
        "    orchard serve MODEL_DIR            # web page at http://127.0.0.1:8000/, POST /v1/predict",
        "    orchard predict --input URI --model MODEL_DIR --output URI   # many images, on Spark",
        "",
        "## Limits",
        "",
        "Trained on studio photos of single fruits on a white background (Fruits-360); photos of other "
        "scenes, several fruits or classes not listed above get a wrong or unsure answer. The service says "
        "when it is not sure (below its confidence threshold) and still gives its top guesses.",
        "",
    ]
    return "\n".join(lines)
