"""Parquet options for the features table: float arrays skip the dictionary, other columns keep it."""
import pyarrow.parquet as pq

from orchard.pipeline.write import parquet_options


def dictionary_columns(folder):
    """Column paths that have a dictionary page in the Parquet files of `folder`."""
    found = set()
    for part in folder.glob("*.parquet"):
        row_group = pq.ParquetFile(part).metadata.row_group(0)
        found |= {row_group.column(i).path_in_schema for i in range(row_group.num_columns)
                  if row_group.column(i).has_dictionary_page}
    return found


def test_options_name_every_float_array_and_nothing_else(spark):
    frame = spark.createDataFrame([], "path string, features array<float>, pca array<double>, sizes array<int>")
    assert parquet_options(frame) == {
        "parquet.enable.dictionary#features.list.element": "false",
        "parquet.enable.dictionary#pca.list.element": "false",
    }


def test_parquet_honours_the_options(spark, tmp_path):
    # repeated values: Parquet would keep a dictionary for both columns by default
    frame = spark.createDataFrame([("Apple", [0.5] * 16) for _ in range(200)], "label string, features array<float>")
    frame.coalesce(1).write.parquet(str(tmp_path / "default"))
    frame.coalesce(1).write.options(**parquet_options(frame)).parquet(str(tmp_path / "chosen"))
    assert dictionary_columns(tmp_path / "default") == {"label", "features.list.element"}
    assert dictionary_columns(tmp_path / "chosen") == {"label"}
