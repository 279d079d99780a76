"""`orchard train`: a multinomial logistic regression (Spark MLlib) on a run's features.

The regularisation is picked by k-fold cross-validation on the training split (a small regParam
grid, log loss), the model is evaluated on the test split (accuracy, macro-F1, per-class
precision/recall, a confusion matrix) and exported with the run's backbone and PCA as one ONNX
graph (orchard.classify.export). MODEL_DIR (a local folder) receives fruit.onnx, metrics.json,
confusion.png, README.md (the model card) and spark_model/ (the Spark LogisticRegressionModel).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from orchard import __version__
from orchard.classify.card import model_card
from orchard.classify.export import Classifier, fruit_model
from orchard.classify.names import CONFUSION_PNG, METRICS_FILE, MODEL_CARD, ONNX_FILE, SPARK_MODEL_DIR
from orchard.errors import OrchardError
from orchard.names import FEATURES_DIR, PCA_MODEL_DIR, RUN_RECORD
from orchard.table.delta import OutputTables, read_table
from orchard.paths import file_digest, is_local_uri, local_path
from orchard.pipeline.models import resolve_model

log = logging.getLogger(__name__)

COLUMNS = ("pca", "features")
DEFAULT_REG_PARAMS = (1e-4, 1e-3, 1e-2, 1e-1)
VECTOR = "_x"
LABEL_INDEX = "_y"


@dataclass
class TrainConfig:
    """What `orchard train` does. run: an `orchard run` output (any URI Spark reads);
    output: a local folder (created; must be empty unless overwrite)."""

    run: str
    output: str
    on: str = "pca"  # the column trained on: "pca" or "features"
    split: str = "Training"  # rows the model (and the cross-validation) sees
    test_split: str = "Test"  # rows it is evaluated on
    reg_params: Sequence[float] = DEFAULT_REG_PARAMS
    folds: int = 3
    max_iter: int = 300
    min_images: int = 5  # classes with fewer training images are left out, and reported
    model_path: Optional[str] = None  # the backbone's ONNX file (default: found like `orchard run`)
    as_of: Optional[int] = None  # the features table's version trained on (default: the newest)
    overwrite: bool = False
    seed: int = 42

    def validate(self) -> None:
        if self.on not in COLUMNS:
            raise OrchardError(f"--on must be one of {', '.join(COLUMNS)}, got {self.on!r}")
        if self.split == self.test_split:
            raise OrchardError(f"the training and test splits must differ (both {self.split!r})")
        if self.folds < 2:
            raise OrchardError(f"cross-validation needs at least 2 folds, got {self.folds}")
        if not self.reg_params or any(r < 0 for r in self.reg_params):
            raise OrchardError(f"regParam grid must be non-negative values, got {list(self.reg_params)}")
        if self.min_images < 1:
            raise OrchardError(f"--min-images must be at least 1, got {self.min_images}")
        if not is_local_uri(self.output):
            raise OrchardError(f"the model folder must be local, got {self.output}")


@dataclass
class TrainResult:
    """What `train` returns: the model folder and its metrics.json content."""

    output: Path
    metrics: Dict[str, Any]
    classes: List[str] = field(default_factory=list)

    @property
    def onnx_file(self) -> Path:
        return self.output / ONNX_FILE


def read_text(spark, uri: str) -> str:
    """A whole (small) file from any filesystem Spark reads."""
    rows = spark.read.text(uri, wholetext=True).collect()
    return rows[0].value if rows else ""


def prepare_output(path: Path, overwrite: bool) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if not overwrite:
            raise OrchardError(f"model folder {path} already exists; pass --overwrite to replace it")
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.mkdir(parents=True, exist_ok=True)


def train(spark, config: TrainConfig) -> TrainResult:
    """Train, evaluate and export; write MODEL_DIR. Raises OrchardError when the run lacks the
    column, a split or the PCA model, when the backbone's sha256 is not the run's, or when the
    output exists (without overwrite)."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    config.validate()
    started = time.perf_counter()
    run_uri = config.run.rstrip("/")
    output = local_path(config.output)
    try:
        record = json.loads(read_text(spark, f"{run_uri}/{RUN_RECORD}"))
    except Exception as error:  # missing or unreadable: not a run output
        raise OrchardError(f"{config.run} is not an `orchard run` output (no readable {RUN_RECORD}): "
                           f"{str(error).splitlines()[0]}") from None
    spec, backbone_path, backbone_sha = resolve_model(record["model"]["name"], config.model_path)
    if backbone_sha != record["model"]["sha256"]:
        raise OrchardError(f"backbone {backbone_path} has sha256 {backbone_sha}; the run was made with "
                           f"{record['model']['sha256']}: pass that file with --model-path")
    prepare_output(output, config.overwrite)

    state = OutputTables(spark, run_uri).state(version=config.as_of)
    if state is None:
        raise OrchardError(f"{config.run} has no features table ({run_uri}/{FEATURES_DIR}/_delta_log)")
    table = read_table(spark, f"{run_uri}/{FEATURES_DIR}", state.version)
    pca_uri = f"{run_uri}/{state.pca_model or PCA_MODEL_DIR}"
    if config.on not in table.columns:
        raise OrchardError(f"the run's features have no column {config.on!r}")
    rows = table.where(F.col(config.on).isNotNull()).select(
        "path", "label", "split", array_to_vector(config.on).alias(VECTOR)).cache()
    train_rows = rows.where(F.col("split") == config.split)
    test_rows = rows.where(F.col("split") == config.test_split)
    per_class = {r["label"]: int(r["count"]) for r in train_rows.groupBy("label").count().collect()}
    if not per_class:
        raise OrchardError(f"no rows of split {config.split!r} with {config.on!r} in {config.run}")
    rare = {label: n for label, n in sorted(per_class.items()) if n < config.min_images}
    if rare:
        log.warning("left out %d class(es) with fewer than %d training images: %s", len(rare), config.min_images,
                    ", ".join(f"{label} ({n})" for label, n in rare.items()))
    kept = sorted(set(per_class) - set(rare))
    if len(kept) < 2:
        raise OrchardError(f"need at least 2 classes with {config.min_images}+ training images, got {len(kept)}")

    fitted = fit(train_rows.where(F.col("label").isin(kept)), kept, config)
    evaluation = evaluate(fitted.model, test_rows, kept)
    rows.unpersist()

    pc = None
    if config.on == "pca":
        from pyspark.ml.feature import PCAModel

        try:
            pc = PCAModel.load(pca_uri).pc.toArray().astype(np.float64)
        except Exception as error:  # py4j: missing or unreadable
            raise OrchardError(f"could not load the run's PCA model {pca_uri} "
                               f"({str(error).splitlines()[0]}); train with --on features instead") from None
    classifier = Classifier(classes=kept, coefficients=fitted.model.coefficientMatrix.toArray().astype(np.float64),
                            intercepts=fitted.model.interceptVector.toArray().astype(np.float64), pc=pc)
    metrics = {
        "orchard_version": __version__,
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run": run_uri,
        "table_version": state.version,
        "on": config.on,
        "dim": int(classifier.coefficients.shape[1]),
        "splits": {"train": config.split, "test": config.test_split},
        "rows": {"train": int(sum(per_class[c] for c in kept)), "test": evaluation["rows"],
                 "test_unknown_class": evaluation["unknown_class_rows"]},
        "classes": kept,
        "left_out_classes": {"min_images": config.min_images, "classes": rare},
        "cross_validation": fitted.summary,
        "test": evaluation["metrics"],
        "confusion_png": CONFUSION_PNG,
    }
    provenance = {
        "run": {"uri": run_uri, "table_version": state.version, "app_id": record.get("spark", {}).get("app_id"),
                "started_at": record.get("started_at"), "counts": record.get("counts")},
        "backbone": {"name": spec.name, "sha256": backbone_sha, "feature_dim": spec.feature_dim},
        "pca": ({"uri": pca_uri, "k": int(pc.shape[1]),
                 "explained_variance": record.get("pca", {}).get("explained_variance")} if pc is not None else None),
        "training": {"on": config.on, "split": config.split, "reg_param": fitted.summary["best_reg_param"],
                     "rows": metrics["rows"]["train"], "orchard_version": __version__,
                     "trained_at": metrics["trained_at"]},
    }
    summary = {key: evaluation["metrics"][key] for key in ("accuracy", "macro_f1")}
    summary.update(split=config.test_split, rows=evaluation["rows"])
    import onnx

    exported = fruit_model(onnx.load(str(backbone_path)), spec, classifier,
                           {"provenance": provenance, "metrics": summary})
    onnx.save(exported, str(output / ONNX_FILE))
    fitted.model.write().overwrite().save(str(output / SPARK_MODEL_DIR))
    (output / CONFUSION_PNG).write_bytes(confusion_png(evaluation["metrics"], kept))
    metrics["model"] = {"file": ONNX_FILE, "sha256": file_digest(output / ONNX_FILE), "provenance": provenance}
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    (output / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    (output / MODEL_CARD).write_text(model_card(metrics))
    log.info("model written to %s (Test accuracy %.4f)", output, summary["accuracy"])
    return TrainResult(output=output, metrics=metrics, classes=kept)


@dataclass
class Fitted:
    model: Any  # pyspark.ml.classification.LogisticRegressionModel (features VECTOR)
    summary: Dict[str, Any]  # the cross-validation: folds, metric, grid with mean scores, best_reg_param


def indexed(frame, classes: List[str]):
    """`frame` with LABEL_INDEX (double): the index of its label in `classes`; rows of other labels dropped."""
    from pyspark.sql import functions as F

    mapping = F.create_map(*[x for i, label in enumerate(classes) for x in (F.lit(label), F.lit(float(i)))])
    return frame.withColumn(LABEL_INDEX, mapping[F.col("label")]).where(F.col(LABEL_INDEX).isNotNull())


def fit(train_rows, classes: List[str], config: TrainConfig) -> Fitted:
    """Cross-validate regParam on `train_rows` (log loss), then the model refitted on all of them."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    regression = LogisticRegression(featuresCol=VECTOR, labelCol=LABEL_INDEX, family="multinomial",
                                    elasticNetParam=0.0, maxIter=config.max_iter)
    grid = ParamGridBuilder().addGrid(regression.regParam, [float(r) for r in config.reg_params]).build()
    evaluator = MulticlassClassificationEvaluator(labelCol=LABEL_INDEX, metricName="logLoss")
    validator = CrossValidator(estimator=regression, estimatorParamMaps=grid, evaluator=evaluator,
                               numFolds=config.folds, seed=config.seed)
    data = indexed(train_rows, classes).cache()
    log.info("cross-validating regParam over %s (%d folds, %d classes)", list(config.reg_params), config.folds,
             len(classes))
    model = validator.fit(data)
    data.unpersist()
    scores = [float(s) for s in model.avgMetrics]
    best = int(np.argmin(scores))
    summary = {
        "folds": config.folds,
        "metric": "logLoss (mean over folds, lower is better)",
        "grid": [{"reg_param": float(r), "log_loss": round(s, 6)} for r, s in zip(config.reg_params, scores)],
        "best_reg_param": float(config.reg_params[best]),
    }
    return Fitted(model=model.bestModel, summary=summary)


def evaluate(model, test_rows, classes: List[str]) -> Dict[str, Any]:
    """Test metrics: {"rows", "unknown_class_rows", "metrics": accuracy, macro_f1, per_class
    (precision, recall, f1, support), confusion (counts [true][predicted]), most_confused}."""
    total = test_rows.count()
    known = indexed(test_rows, classes)
    counts = model.transform(known).groupBy(LABEL_INDEX, "prediction").count().collect()
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for row in counts:
        confusion[int(row[LABEL_INDEX]), int(row["prediction"])] = int(row["count"])
    n = int(confusion.sum())
    if not n:
        raise OrchardError("no test rows of the trained classes to evaluate on")
    return {"rows": n, "unknown_class_rows": int(total - n), "metrics": classification_metrics(confusion, classes)}


def classification_metrics(confusion: np.ndarray, classes: List[str], top: int = 10) -> Dict[str, Any]:
    """Accuracy, macro-F1 (over classes with test rows or predictions), per-class precision,
    recall, F1 and support, and the `top` most frequent confusions, from a confusion matrix
    (int counts, [true][predicted])."""
    true_positive = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    present = (support > 0) | (predicted > 0)
    off = [(int(confusion[i, j]), classes[i], classes[j]) for i in range(len(classes)) for j in range(len(classes))
           if i != j and confusion[i, j] > 0]
    off.sort(key=lambda item: (-item[0], item[1], item[2]))
    return {
        "accuracy": round(float(true_positive.sum() / confusion.sum()), 6),
        "macro_f1": round(float(f1[present].mean()), 6),
        "per_class": {label: {"precision": round(float(precision[i]), 6), "recall": round(float(recall[i]), 6),
                              "f1": round(float(f1[i]), 6), "support": int(support[i])}
                      for i, label in enumerate(classes)},
        "most_confused": [{"label": t, "predicted": p, "count": c} for c, t, p in off[:top]],
        "confusion": confusion.tolist(),
    }


def confused_classes(metrics: Dict[str, Any], classes: List[str], limit: int = 12) -> List[str]:
    """Classes in the most frequent confusions (then the lowest recall), at most `limit`."""
    chosen: List[str] = []
    for pair in metrics["most_confused"]:
        for label in (pair["label"], pair["predicted"]):
            if label not in chosen and len(chosen) < limit:
                chosen.append(label)
    by_recall = sorted(classes, key=lambda c: (metrics["per_class"][c]["recall"], c))
    chosen += [c for c in by_recall if c not in chosen][: max(0, min(limit, 6) - len(chosen))]
    return chosen


def confusion_png(metrics: Dict[str, Any], classes: List[str]) -> bytes:
    """PNG of the confusion matrix restricted to the most confused classes (counts annotated)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = confused_classes(metrics, classes)
    index = [classes.index(c) for c in chosen]
    matrix = np.asarray(metrics["confusion"])[np.ix_(index, index)]
    size = 2.5 + 0.55 * len(chosen)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(chosen)), chosen, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(chosen)), chosen, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true label")
    for i in range(len(chosen)):
        for j in range(len(chosen)):
            if matrix[i, j]:
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                          color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    pairs = len(metrics["most_confused"])
    title = "most confused classes" if pairs else "no confusions (lowest-recall classes shown)"
    axes.set_title(f"{title}: accuracy {metrics['accuracy']:.3f}", fontsize=10)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def summary_table(metrics: Dict[str, Any]) -> str:
    """The short table `orchard train` prints: overall scores, the grid, then per class."""
    test = metrics["test"]
    lines = [
        f"trained on {metrics['on']} ({metrics['dim']} values), {metrics['rows']['train']} {metrics['splits']['train']} "
        f"rows, {len(metrics['classes'])} classes; regParam {metrics['cross_validation']['best_reg_param']:g} "
        f"(cross-validated: " + ", ".join(f"{g['reg_param']:g} -> {g['log_loss']:.4f}"
                                          for g in metrics["cross_validation"]["grid"]) + " log loss)",
        f"{metrics['splits']['test']}: {metrics['rows']['test']} rows, accuracy {test['accuracy']:.4f}, "
        f"macro-F1 {test['macro_f1']:.4f}",
    ]
    left_out = metrics["left_out_classes"]["classes"]
    if left_out:
        lines.append(f"left out (fewer than {metrics['left_out_classes']['min_images']} training images): "
                     + ", ".join(f"{c} ({n})" for c, n in left_out.items()))
    if metrics["rows"]["test_unknown_class"]:
        lines.append(f"{metrics['rows']['test_unknown_class']} test rows of classes the model does not know "
                     "(not counted)")
    width = max(len(c) for c in metrics["classes"])
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for label, scores in test["per_class"].items():
        lines.append(f"{label:<{width}}  {scores['precision']:9.3f}  {scores['recall']:6.3f}  "
                     f"{scores['f1']:5.3f}  {scores['support']:7d}")
    for pair in test["most_confused"][:5]:
        lines.append(f"confused: {pair['label']} -> {pair['predicted']} ({pair['count']}x)")
    return "\n".join(lines)


def spark_probabilities(model_dir: Path, frame, column: str) -> Tuple[List[str], Any]:
    """Spark's own predictions for `frame`'s `column` (array<float>) with the model saved in
    `model_dir`: (classes, DataFrame with probability (vector) and prediction (double) added)."""
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.ml.functions import array_to_vector

    metrics = json.loads((model_dir / METRICS_FILE).read_text())
    model = LogisticRegressionModel.load(str(model_dir / SPARK_MODEL_DIR))
    return metrics["classes"], model.transform(frame.withColumn(VECTOR, array_to_vector(column)))
