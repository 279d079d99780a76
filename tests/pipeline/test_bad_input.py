"""Bad files become error rows with a reason; nothing is lost; the CLI exits 0."""
import dataclasses
import io
import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from tests.pipeline.test_preprocess import png_header_claiming
from tests.fixtures.tables import table_of

pytestmark = pytest.mark.slow

GOOD = 6


@pytest.fixture(scope="module")
def messy_dataset(tmp_path_factory, sample_dir):
    """Six good JPEGs, images in odd modes and names, and every kind of bad file."""
    root = tmp_path_factory.mktemp("messy")
    banana, lemon = root / "Training" / "Banana", root / "Test" / "Lemon"
    banana.mkdir(parents=True)
    lemon.mkdir(parents=True)
    sources = sorted((sample_dir / "Training" / "Banana").iterdir())[:GOOD]
    for image in sources:
        shutil.copyfile(image, banana / image.name)
    good_bytes = sources[0].read_bytes()
    (lemon / "UPPER CASE.JPG").write_bytes(good_bytes)
    (lemon / "odd+name %20 é.jpeg").write_bytes(good_bytes)
    rgba = io.BytesIO()
    Image.new("RGBA", (64, 48), (200, 200, 0, 128)).save(rgba, "PNG")
    (lemon / "alpha.png").write_bytes(rgba.getvalue())
    cmyk = io.BytesIO()
    Image.new("CMYK", (64, 48), (0, 0, 255, 0)).save(cmyk, "JPEG")
    (lemon / "cmyk.jpg").write_bytes(cmyk.getvalue())
    bad = {
        "Training/Banana/empty.jpg": b"",
        "Training/Banana/truncated.jpg": good_bytes[: len(good_bytes) // 3],
        "Training/Banana/random.jpg": bytes((i * 73 + 11) % 256 for i in range(4096)),
        "Training/Banana/saved-page.jpg": b"<!DOCTYPE html><html><head><title>Banana</title></head></html>",
        "Test/Lemon/bomb.png": png_header_claiming(30000, 30000),
    }
    for relative, data in bad.items():
        (root / relative).write_bytes(data)
    (root / "notes.txt").write_text("not an image")
    (lemon / "labels.csv").write_text("a,b\n")
    return root


@pytest.fixture(scope="module")
def messy_run(messy_dataset, tmp_path_factory, model_file):
    output = tmp_path_factory.mktemp("out") / "messy"
    result = subprocess.run(
        [sys.executable, "-m", "orchard", "run", "--input", str(messy_dataset), "--output", str(output),
         "--model-path", str(model_file), "--pca-k", "2", "--master", "local[2]"],
        capture_output=True, text=True, timeout=300,
    )
    return result, output


def test_run_goes_on_and_exits_zero(messy_run):
    result, _ = messy_run
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_bad_file_has_a_reason(messy_run):
    _, output = messy_run
    table = table_of(output, "errors").to_pydict()
    errors = dict(zip(table["path"], table["error"]))
    assert set(errors) == {
        "Training/Banana/empty.jpg", "Training/Banana/truncated.jpg", "Training/Banana/random.jpg",
        "Training/Banana/saved-page.jpg", "Test/Lemon/bomb.png",
    }
    assert errors["Training/Banana/empty.jpg"] == "empty file (0 bytes)"
    assert "truncated" in errors["Training/Banana/truncated.jpg"]
    assert "unknown format" in errors["Training/Banana/random.jpg"]
    assert "HTML" in errors["Training/Banana/saved-page.jpg"]
    assert "decompression bomb" in errors["Test/Lemon/bomb.png"]


def test_nothing_is_lost(messy_run, messy_dataset):
    _, output = messy_run
    record = json.loads((output / "run.json").read_text())
    counts = record["counts"]
    on_disk = sum(1 for p in messy_dataset.rglob("*") if p.is_file())
    assert counts == {"found": on_disk, "images": on_disk - 2, "featurized": GOOD + 4, "errors": 5, "ignored": 2,
                      "forgotten": 0}
    assert sorted(record["ignored_files"]) == ["Test/Lemon/labels.csv", "notes.txt"]
    featurized = set(table_of(output, "features").column("path").to_pylist())
    assert {"Test/Lemon/UPPER CASE.JPG", "Test/Lemon/odd+name %20 é.jpeg", "Test/Lemon/alpha.png",
            "Test/Lemon/cmyk.jpg"} <= featurized
    errors = set(table_of(output, "errors").column("path").to_pylist())
    assert len(featurized) + len(errors) == counts["images"] and not featurized & errors


def test_files_removed_or_emptied_after_the_listing_are_error_rows(spark, sample_dir, model_file, tmp_path,
                                                                   monkeypatch):
    """The Python workers read a local input's files themselves (issue 15): a file gone or
    emptied between the listing and the read still ends as an error row with its reason."""
    import orchard
    from orchard.pipeline import run as run_module

    root = tmp_path / "data" / "Training" / "Banana"
    root.mkdir(parents=True)
    for image in sorted((sample_dir / "Training" / "Banana").iterdir())[:4]:
        shutil.copyfile(image, root / image.name)
    gone, emptied = sorted(root.iterdir())[:2]
    listed = run_module.list_input

    def list_then_change(*args, **kwargs):
        listing = listed(*args, **kwargs)
        gone.unlink()
        emptied.write_bytes(b"")
        return listing

    monkeypatch.setattr(run_module, "list_input", list_then_change)
    output = tmp_path / "out"
    record = orchard.run(orchard.RunConfig(input=str(tmp_path / "data"), output=str(output), model_path=str(model_file),
                                           pca_k=1), spark=spark)
    assert dataclasses.asdict(record.counts) == {"found": 4, "images": 4, "featurized": 2, "errors": 2, "ignored": 0,
                                                     "forgotten": 0}
    table = table_of(output, "errors").to_pydict()
    errors = dict(zip(table["path"], table["error"]))
    assert "could not read" in errors[f"Training/Banana/{gone.name}"] and "FileNotFoundError" in errors[
        f"Training/Banana/{gone.name}"]
    assert errors[f"Training/Banana/{emptied.name}"] == "empty file (0 bytes)"
