"""Listing: every file name comes back exactly, whatever characters it holds."""
from __future__ import annotations

import shutil

from orchard.pipeline.load import list_input


def test_odd_names_are_listed_exactly(spark, sample_dir, tmp_path):
    image = next((sample_dir / "Training").rglob("*.jpg"))
    names = ["plain.jpg", "with space.jpg", "comma, and plus+.jpg", "accent é.jpg", "line\nbreak.jpg", "%41.jpg"]
    folder = tmp_path / "data" / "Training" / "Apple"
    folder.mkdir(parents=True)
    for name in names:
        shutil.copyfile(image, folder / name)
    (folder / "notes.txt").write_text("not an image")
    listing = list_input(spark, str(tmp_path / "data"))
    assert listing.images == sorted(f"Training/Apple/{name}" for name in names)
    assert listing.ignored == ["Training/Apple/notes.txt"]


def test_label_and_split_come_from_the_folders(spark):
    from orchard.pipeline.load import with_label_and_split

    paths = ["Training/Apple Braeburn/0_100.jpg", "Banana/b.png", "loose.jpg", "Test/Kiwi/deep/x.jpg"]
    frame = with_label_and_split(spark.createDataFrame([(p,) for p in paths], "path string"))
    got = {row.path: (row.label, row.split) for row in frame.collect()}
    assert got == {
        "Training/Apple Braeburn/0_100.jpg": ("Apple Braeburn", "Training"),
        "Banana/b.png": ("Banana", None),
        "loose.jpg": (None, None),
        "Test/Kiwi/deep/x.jpg": ("Kiwi", "Test"),
    }


def test_load_images_reads_every_image_and_leaves_the_session_as_it_was(spark, sample_dir, tmp_path):
    from orchard.pipeline.load import OPEN_COST_KEY, load_images

    folder = tmp_path / "data" / "Training" / "Lemon"
    folder.mkdir(parents=True)
    images = sorted((sample_dir / "Training" / "Lemon").iterdir())[:5]
    for image in images:
        shutil.copyfile(image, folder / image.name)
    (folder / "notes.txt").write_text("not an image")
    before = spark.conf.get(OPEN_COST_KEY)
    frame = load_images(spark, str(tmp_path / "data"), partitions=3)
    assert frame.columns == ["path", "label", "split", "content"]
    assert dict(frame.dtypes)["content"] == "binary" and frame.rdd.getNumPartitions() == 3
    rows = {row.path: row for row in frame.collect()}
    assert set(rows) == {f"Training/Lemon/{image.name}" for image in images}
    first = rows[f"Training/Lemon/{images[0].name}"]
    assert (first.label, first.split, bytes(first.content)) == ("Lemon", "Training", images[0].read_bytes())
    assert frame.sparkSession is spark  # the caller's session, with its own settings unchanged
    assert spark.conf.get(OPEN_COST_KEY) == before


def test_the_scan_counts_a_small_open_cost_without_setting_it_on_the_caller(spark, sample_dir):
    from orchard.pipeline.load import OPEN_COST_KEY, list_input, read_images

    before = spark.conf.get(OPEN_COST_KEY)
    listing = list_input(spark, str(sample_dir))
    images = read_images(spark, listing, 2)
    scan_partitions = images._jdf.queryExecution().executedPlan().collectLeaves().head().execute().getNumPartitions()
    default_scan = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(sample_dir))
    # 1,920 small files: 4 MB counted per file packs ~32 files a scan task; 64 KB, all in a few
    assert scan_partitions <= 4 < default_scan.rdd.getNumPartitions()
    assert spark.conf.get(OPEN_COST_KEY) == before
