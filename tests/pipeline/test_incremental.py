"""Runs that grow, on real Spark and the local disk: --update, --refit-pca, --pca-model, resume."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from orchard.errors import OrchardError
from orchard.pipeline.config import RunConfig
from orchard.pipeline.run import run_pipeline
from orchard.table.delta import OutputTables
from orchard.table.read import history, read_features

pytestmark = pytest.mark.slow

LABELS = ("Banana", "Lemon", "Kiwi")


def make_input(sample_dir: Path, root: Path, per_label: int, start: int = 0) -> Path:
    for label in LABELS:
        (root / "Training" / label).mkdir(parents=True, exist_ok=True)
        for image in sorted((sample_dir / "Training" / label).iterdir())[start:start + per_label]:
            shutil.copy(image, root / "Training" / label / image.name)
    return root


def features_of(output: Path, version=None):
    frame = read_features(str(output), version=version)
    return {row.path: (np.asarray(row.features), np.asarray(row.pca)) for row in frame.itertuples()}


def test_update_matches_a_full_run_and_keeps_the_pca_space(spark, sample_dir, model_file, tmp_path):
    data = make_input(sample_dir, tmp_path / "in", 5)
    output = tmp_path / "out"
    config = RunConfig(input=str(data), output=str(output), model_path=str(model_file), pca_k=3)
    run_pipeline(config, spark=spark)
    before = features_of(output)
    make_input(sample_dir, data, 2, start=5)  # 6 new
    removed = sorted((data / "Training" / "Kiwi").iterdir())[0]
    removed.unlink()
    changed = sorted((data / "Training" / "Lemon").iterdir())[0]
    changed.write_bytes((data / "Training" / "Banana" / sorted(p.name for p in (data / "Training" / "Banana").iterdir())[0]).read_bytes())
    config.update = True
    record = run_pipeline(config, spark=spark)
    last = record.history[-1]
    assert (last["new"], last["changed"], last["removed"], last["unchanged"]) == (6, 1, 1, 13)
    assert last["featurized_now"] == 7 and record.counts.featurized == 20
    after = features_of(output)
    assert len(after) == 20 and len(read_features(str(output)).path.unique()) == 20
    full_out = tmp_path / "full"
    run_pipeline(RunConfig(input=str(data), output=str(full_out), model_path=str(model_file), pca_k=3), spark=spark)
    full = features_of(full_out)
    assert sorted(full) == sorted(after)
    assert max(np.abs(full[p][0] - after[p][0]).max() for p in full) <= 1e-5
    rel_changed = changed.relative_to(data).as_posix()
    for path, (features, pca) in before.items():  # old rows' pca unchanged (same space), bit for bit
        if path in after and path != rel_changed:
            assert after[path][1].tobytes() == pca.tobytes()
    on_disk = json.loads((output / "run.json").read_text())
    assert [entry["mode"] for entry in on_disk["history"]] == ["full", "update"]
    versions = history(str(output))
    assert [(v["version"], v["operation"]) for v in versions] == [(0, "WRITE"), (1, "MERGE")]  # one new version
    assert on_disk["table"]["features_version"] == 1 and versions[1]["orchard"]["run"]["mode"] == "update"
    as_of = features_of(output, version=0)  # time travel: the first run's rows, exactly
    assert sorted(as_of) == sorted(before)
    assert all(as_of[p][1].tobytes() == before[p][1].tobytes() for p in before)

    config.refit_pca = True  # everything re-projected with a new fit: a full run's pca, up to sign
    run_pipeline(config, spark=spark)
    refit = features_of(output)
    assert max(np.abs(np.abs(full[p][1]) - np.abs(refit[p][1])).max() for p in full) <= 1e-3


def test_empty_update_featurizes_nothing(spark, sample_dir, model_file, tmp_path):
    data = make_input(sample_dir, tmp_path / "in", 3)
    output = tmp_path / "out"
    config = RunConfig(input=str(data), output=str(output), model_path=str(model_file), pca_k=2)
    run_pipeline(config, spark=spark)
    before = features_of(output)
    config.update = True
    record = run_pipeline(config, spark=spark)
    assert record.history[-1]["featurized_now"] == 0 and record.history[-1]["unchanged"] == 9
    after = features_of(output)
    assert sorted(after) == sorted(before)


def test_pca_model_from_another_run_and_a_mismatch(spark, sample_dir, model_file, tmp_path):
    train = make_input(sample_dir, tmp_path / "train", 4)
    test = make_input(sample_dir, tmp_path / "test", 2, start=10)
    run_pipeline(RunConfig(input=str(train), output=str(tmp_path / "a"), model_path=str(model_file), pca_k=3),
                 spark=spark)
    record = run_pipeline(RunConfig(input=str(test), output=str(tmp_path / "b"), model_path=str(model_file),
                                    pca_model=str(tmp_path / "a")), spark=spark)
    assert record.pca_k == 3
    from pyspark.ml.feature import PCAModel

    state = OutputTables(spark, str(tmp_path / "a")).state()
    model = PCAModel.load(str(tmp_path / "a" / state.pca_model))
    rows = read_features(str(tmp_path / "b"))
    expected = np.asarray(rows.features.iloc[0], dtype=np.float64) @ model.pc.toArray()
    assert np.abs(expected - np.asarray(rows.pca.iloc[0])).max() <= 1e-3
    with pytest.raises(OrchardError, match="fitted on features of length"):
        from tests.pipeline.test_commit import small_pca_model

        run_pipeline(RunConfig(input=str(test), output=str(tmp_path / "c"), model_path=str(model_file),
                               pca_model=small_pca_model(spark, tmp_path / "m")), spark=spark)


def test_an_int8_update_quantizes_on_its_base_images_and_a_precision_change_is_refused(spark, sample_dir, model_file,
                                                                                       tmp_path):
    data = make_input(sample_dir, tmp_path / "in", 3)
    output = tmp_path / "out"
    config = RunConfig(input=str(data), output=str(output), model_path=str(model_file), pca_k=2, precision="int8")
    first = run_pipeline(config, spark=spark)
    make_input(sample_dir, data, 2, start=3)  # 6 new images: a new listing, the same calibration images
    config.update = True
    record = run_pipeline(config, spark=spark)
    assert record.history[-1]["featurized_now"] == 6 and record.counts.featurized == 15
    assert record.model["int8_sha256"] == first.model["int8_sha256"]
    with pytest.raises(OrchardError, match="precision"):
        run_pipeline(RunConfig(input=str(data), output=str(output), model_path=str(model_file), pca_k=2,
                               update=True), spark=spark)


def test_a_first_run_in_chunks_gives_the_rows_of_a_run_in_one_go(spark, sample_dir, model_file, tmp_path):
    data = make_input(sample_dir, tmp_path / "in", 3)
    whole = RunConfig(input=str(data), output=str(tmp_path / "whole"), model_path=str(model_file), pca_k=2)
    run_pipeline(whole, spark=spark)
    chunked = RunConfig(input=str(data), output=str(tmp_path / "chunked"), model_path=str(model_file), pca_k=2,
                        chunk_images=4)
    record = run_pipeline(chunked, spark=spark)
    assert record.history[-1]["new"] == 9 and record.counts.featurized == 9
    a, b = features_of(tmp_path / "whole"), features_of(tmp_path / "chunked")
    assert sorted(a) == sorted(b) and max(np.abs(a[p][0] - b[p][0]).max() for p in a) <= 1e-5
    staged = tmp_path / "chunked" / "_orchard" / "staged"  # the chunks' table: removed once the run is committed
    assert not staged.exists()
    assert [v["operation"] for v in history(str(tmp_path / "chunked"))] == ["WRITE"]  # one commit for readers


def test_update_chunks_are_sorted_and_sized_and_the_run_puts_back_the_shuffle_setting(spark, sample_dir, model_file,
                                                                                        tmp_path):
    from orchard.pipeline.grow import chunks

    paths = [f"Training/Kiwi/{i:04d}.jpg" for i in range(250)]
    todo = spark.createDataFrame([(p,) for p in reversed(paths)], "path string").repartition(7)
    got = list(chunks(todo, len(paths), 100))
    assert [len(chunk) for chunk in got] == [100, 100, 50]
    assert [p for chunk in got for p in chunk] == paths

    spark.conf.set("spark.sql.shuffle.partitions", "13")
    try:
        data = make_input(sample_dir, tmp_path / "in", 2)
        run_pipeline(RunConfig(input=str(data), output=str(tmp_path / "out"), model_path=str(model_file), pca_k=2),
                     spark=spark)
        assert spark.conf.get("spark.sql.shuffle.partitions") == "13"  # the run used 2 x cores in a child session
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "4")
