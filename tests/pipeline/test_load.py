"""Listing: every file name comes back exactly, whatever characters it holds."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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


# --------------------------------------------------------------------------- inputs from the field (issue 11)


def test_walk_local_follows_links_once_and_reports_dangling_links_and_loops(tmp_path):
    from orchard.pipeline.load import walk_local

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "Plum").mkdir(parents=True)
    outside.mkdir()
    (root / "Plum" / "a.jpg").write_bytes(b"x")
    (outside / "b.jpg").write_bytes(b"yy")
    (root / "Linked").symlink_to(outside, target_is_directory=True)
    (root / "Plum" / "gone.jpg").symlink_to("missing.jpg")
    (root / "Plum" / "loop").symlink_to("..", target_is_directory=True)
    (root / "Plum" / "_hidden.jpg").write_bytes(b"x")
    (root / ".git").mkdir()
    (root / ".git" / "c.jpg").write_bytes(b"x")
    entries = {entry.relative: entry for entry in walk_local(root)}
    assert set(entries) == {"Plum/a.jpg", "Linked/b.jpg", "Plum/gone.jpg", "Plum/loop"}
    assert entries["Linked/b.jpg"].size == 2 and entries["Plum/a.jpg"].problem is None
    assert entries["Plum/gone.jpg"].problem == "dangling symbolic link (-> missing.jpg)"
    assert "loop" in entries["Plum/loop"].problem


def test_the_layout_is_decided_once_and_strays_are_reported():
    from orchard.pipeline.load import decide_layout, stray_reason

    split = decide_layout(["Training/Apple/a.jpg", "Training/b.jpg", "c.jpg"])
    assert split is True
    assert stray_reason("Training/Apple/batch2/a3.jpg", split) is None
    assert "outside a class folder" in stray_reason("Training/b.jpg", split)
    assert "outside a class folder" in stray_reason("c.jpg", split)
    assert decide_layout(["Apple/a.jpg", "Kiwi/b.jpg"]) is False
    assert stray_reason("Apple/a.jpg", False) is None


def test_a_glob_root_with_colons_lists_only_its_own_files(spark, sample_dir, tmp_path):
    image = next((sample_dir / "Training").rglob("*.jpg"))
    root, sibling = tmp_path / "fruits [v2]", tmp_path / "fruits v"
    for folder in (root / "Grade:A", sibling / "Kiwi"):
        folder.mkdir(parents=True)
        shutil.copyfile(image, folder / "12:30:45.jpg")
        (folder / "empty.jpg").write_bytes(b"")
    listing = list_input(spark, str(root))
    assert listing.images == ["Grade:A/12:30:45.jpg", "Grade:A/empty.jpg"]
    assert listing.problems == {"Grade:A/empty.jpg": "empty file (0 bytes)"}
    assert listing.uri("Grade:A/12:30:45.jpg").startswith("file:/")


def test_the_listing_is_columns_with_sizes_times_and_a_bounded_sample_of_ignored_names(spark, sample_dir, tmp_path):
    from orchard.pipeline.load import IGNORED_SAMPLE, LISTING_COLUMNS

    image = next((sample_dir / "Training").rglob("*.jpg"))
    folder = tmp_path / "data" / "Training" / "Apple"
    folder.mkdir(parents=True)
    for i in range(3):
        shutil.copyfile(image, folder / f"{i}.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (tmp_path / "data" / "stray.jpg").write_bytes(image.read_bytes())
    for i in range(IGNORED_SAMPLE + 50):
        (folder / f"note{i:03d}.txt").write_text("x")
    listing = list_input(spark, str(tmp_path / "data"))
    assert tuple(listing.table.column_names) == LISTING_COLUMNS and listing.table.num_rows == 5
    assert listing.ignored_count == IGNORED_SAMPLE + 50 and listing.found == IGNORED_SAMPLE + 55
    assert listing.ignored == [f"Training/Apple/note{i:03d}.txt" for i in range(IGNORED_SAMPLE)]
    assert listing.readable == [f"Training/Apple/{i}.jpg" for i in range(3)]
    assert set(listing.problems) == {"Training/Apple/empty.jpg", "stray.jpg"}
    readable = listing.readable_table.to_pylist()
    stat = (folder / "0.jpg").stat()
    assert readable[0] == {"path": "Training/Apple/0.jpg", "size": stat.st_size, "mtime_ms": stat.st_mtime_ns // 10**6}
    assert listing.largest_image == image.stat().st_size


def test_n_readable_counts_the_images_without_a_problem():
    import pyarrow as pa

    from orchard.pipeline.load import Listing

    table = pa.table({"path": ["a.jpg", "b.jpg", "c.jpg"], "size": [1, 0, 3], "mtime_ms": [1, 2, 3],
                      "problem": [None, "empty file", None]})
    listing = Listing(root_uri="file:/x", table=table)
    assert listing.n_readable == 2 == listing.readable_table.num_rows


# --------------------------------------------------------------------------- local files, read by the workers (issue 15)


def test_local_root_is_a_filesystem_path_only_for_the_local_disk():
    from orchard.pipeline.load import local_root

    assert local_root("file:/data/fruits [v2]#1") == "/data/fruits [v2]#1"  # as list_input qualifies: unescaped
    assert local_root("file:///data/x") == "/data/x"
    assert local_root("hdfs://namenode:8020/data") is None and local_root("s3a://bucket/data") is None


def test_image_locations_give_each_local_image_its_own_path(spark, sample_dir, tmp_path):
    from orchard.errors import OrchardError
    from orchard.pipeline.load import Listing, image_locations, list_input

    image = next((sample_dir / "Training").rglob("*.jpg"))
    names = ["plain.jpg", "with space.jpg", "hash#1?.jpg", "%41.jpg", "12:30:45.jpg", "accent é.jpg"]
    root = tmp_path / "fruits #2"
    for split, klass in (("Training", "Apple"), ("Test", "Kiwi")):
        (root / split / klass).mkdir(parents=True)
        for name in names:
            shutil.copyfile(image, root / split / klass / name)
    (root / "Test" / "Kiwi" / "empty.jpg").write_bytes(b"")  # a listing problem: not read
    listing = list_input(spark, str(root))
    frame = image_locations(spark, listing, 3)
    assert frame.columns == ["path", "label", "split", "location"] and frame.rdd.getNumPartitions() == 3
    rows = {row.path: row for row in frame.collect()}
    expected = {f"{split}/{klass}/{name}": (klass, split)
                for split, klass in (("Training", "Apple"), ("Test", "Kiwi")) for name in names}
    assert {path: (row.label, row.split) for path, row in rows.items()} == expected
    for path, row in rows.items():  # the exact file, whatever its name holds
        assert row.location == str(root / path) and Path(row.location).read_bytes() == image.read_bytes()
    some = image_locations(spark, listing, 1, paths=["Test/Kiwi/%41.jpg"]).collect()
    assert [(row.path, row.location) for row in some] == [("Test/Kiwi/%41.jpg", str(root / "Test/Kiwi/%41.jpg"))]
    with pytest.raises(OrchardError, match="not on the local disk"):
        image_locations(spark, Listing(root_uri="hdfs://namenode:8020/data"), 1)
