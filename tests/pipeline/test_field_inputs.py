"""Inputs from the field (issue 11): odd names, paths, locales, phone photos, degenerate data.

Each kind is built in a temporary folder beside ordinary 100x100 fruit images and run through
the CLI; every run's counts reconcile (found = featurized + errors + ignored).
"""
import io
import json
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.fixtures.tables import table_of

pytestmark = pytest.mark.slow

ROOT_NAME = "fruits [v2] {2024} crop*"  # a Hadoop glob that also matches the sibling below
SIBLING_NAME = "fruits v 2024 crop"


def fruit(sample_dir: Path, klass: str = "Apple Braeburn", index: int = 0) -> Path:
    return sorted((sample_dir / "Training" / klass).iterdir())[index]


def copy_fruits(sample_dir: Path, folder: Path, count: int = 2, klass: str = "Banana") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        shutil.copyfile(fruit(sample_dir, klass, index), folder / f"ok{index}.jpg")


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def run_cli(root: Path, output: Path, model_file: Path, *extra: str, env=None):
    result = subprocess.run(
        [sys.executable, "-m", "orchard", "run", "--input", str(root), "--output", str(output),
         "--model-path", str(model_file), "--pca-k", "2", "--master", "local[2]", *extra],
        capture_output=True, text=True, timeout=400, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((output / "run.json").read_text(encoding="utf-8"))  # strict: no NaN
    counts = record["counts"]
    assert counts["featurized"] + counts["errors"] + counts["ignored"] == counts["found"]
    features = table_of(output, "features").to_pandas()
    errors = table_of(output, "errors").to_pandas()
    assert len(features) == counts["featurized"] and len(errors) == counts["errors"]
    return record, features.set_index("path"), errors.set_index("path")


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------------------- one field run


@pytest.fixture(scope="module")
def field(tmp_path_factory, sample_dir, model_file):
    """One input holding kinds 1, 2, 4, 5, 6, 7, 8, 10 and 11, run once with a 1 MB binaryFile limit."""
    base = tmp_path_factory.mktemp("field")
    root = base / ROOT_NAME
    train = root / "Training"
    copy_fruits(sample_dir, train / "Banana")
    copy_fruits(sample_dir, base / SIBLING_NAME / "Training" / "Kiwi", klass="Kiwi")  # kind 1
    # kind 2: colons
    apple = train / "Apple"
    copy_fruits(sample_dir, apple, klass="Apple Braeburn")
    shutil.copyfile(fruit(sample_dir), apple / "2023-05-01 12:30:45.jpg")
    shutil.copyfile(fruit(sample_dir), apple / "snapshot::2.jpg")
    copy_fruits(sample_dir, train / "Grade:A", count=1)
    # kind 4: links
    outside = base / "outside"
    copy_fruits(sample_dir, outside, klass="Lemon")
    (train / "Linked").symlink_to(outside, target_is_directory=True)
    (apple / "gone.jpg").symlink_to("missing.jpg")
    copy_fruits(sample_dir, train / "Plum", klass="Pear")
    (train / "Plum" / "loop").symlink_to("..", target_is_directory=True)
    # kind 5: a 1.4 MB PNG over the 1 MB limit set for the run
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    (train / "Banana" / "big.png").write_bytes(encoded(Image.fromarray(noise), "PNG"))
    # kind 6: EXIF orientation, on a non-square crop (width and height differ)
    photo = Image.open(fruit(sample_dir)).convert("RGB").crop((0, 0, 100, 70)).resize((200, 140))
    phone = train / "Phone"
    phone.mkdir()
    (phone / "upright.jpg").write_bytes(encoded(photo, "JPEG", quality=95))
    for orientation, stored in ((3, photo.transpose(Image.ROTATE_180)), (6, photo.transpose(Image.ROTATE_90)),
                                (8, photo.transpose(Image.ROTATE_270))):
        exif = Image.Exif()
        exif[0x0112] = orientation
        (phone / f"orientation{orientation}.jpg").write_bytes(encoded(stored, "JPEG", quality=95, exif=exif))
    (phone / "corrupt_exif.jpg").write_bytes(encoded(photo, "JPEG", quality=95, exif=b"Exif\x00\x00MM\x00*garbage"))
    # kind 7: formats
    import pillow_heif

    pillow_heif.register_heif_opener()
    formats = train / "Formats"
    formats.mkdir()
    heic = encoded(photo, "HEIF", quality=95)
    for name in ("a.heic", "b.HEIF", "heic_behind.jpg"):
        (formats / name).write_bytes(heic)
    for name, fmt in (("c.webp", "WEBP"), ("d.bmp", "BMP"), ("e.tif", "TIFF"), ("f.gif", "GIF")):
        (formats / name).write_bytes(encoded(photo, fmt))
    (formats / "paper.jpg").write_bytes(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n" * 10)
    (formats / "page.jpg").write_bytes(b"<!DOCTYPE html><html><body>apple</body></html>")
    (formats / "fake_avif.jpg").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00" + b"\x01" * 200)
    (formats / "broken.webp").write_bytes(b"RIFF\x00\x10\x00\x00WEBPVP8 " + b"\x02" * 200)
    # kind 8: transparency by a colour key (tRNS) in RGB and L images
    pixels = np.asarray(Image.open(fruit(sample_dir, "Apple Braeburn", 1)).convert("RGB")).copy()
    background = pixels.min(axis=2) > 235
    on_white, keyed = pixels.copy(), pixels.copy()
    on_white[background], keyed[background] = 255, 0
    clear = train / "Clear"
    clear.mkdir()
    (clear / "on_white.png").write_bytes(encoded(Image.fromarray(on_white), "PNG"))
    (clear / "keyed_rgb.png").write_bytes(encoded(Image.fromarray(keyed), "PNG", transparency=(0, 0, 0)))
    gray_white, gray_keyed = Image.fromarray(on_white).convert("L"), Image.fromarray(keyed).convert("L")
    (clear / "gray_on_white.png").write_bytes(encoded(gray_white, "PNG"))
    (clear / "keyed_l.png").write_bytes(encoded(gray_keyed, "PNG", transparency=0))
    # kind 10: images outside class folders
    shutil.copyfile(fruit(sample_dir), root / "stray_root.jpg")
    shutil.copyfile(fruit(sample_dir), train / "stray_in_split.jpg")
    (apple / "batch2").mkdir()
    shutil.copyfile(fruit(sample_dir), apple / "batch2" / "a3.jpg")
    # kind 11: hidden names, one rule
    for name in ("_metadata.jpg", "_common_metadata.jpg", "_a=b.jpg", "_x.jpg", ".x.jpg"):
        shutil.copyfile(fruit(sample_dir), apple / name)
    (train / "_tmp").mkdir()
    shutil.copyfile(fruit(sample_dir), train / "_tmp" / "t.jpg")
    output = base / "out"
    record, features, errors = run_cli(root, output, model_file,
                                       "--conf", "spark.sql.sources.binaryFile.maxLength=1000000")
    return record, features, errors


def test_kind1_a_root_with_glob_characters_is_literal(field):
    record, features, errors = field
    assert ROOT_NAME in record["input"]
    assert not any("Kiwi" in path for path in list(features.index) + list(errors.index))
    assert {"Training/Banana/ok0.jpg", "Training/Banana/ok1.jpg"} <= set(features.index)


def test_kind2_colons_in_names_keep_their_names_and_labels(field):
    _, features, _ = field
    assert features.loc["Training/Apple/2023-05-01 12:30:45.jpg", "label"] == "Apple"
    assert features.loc["Training/Apple/snapshot::2.jpg", "label"] == "Apple"
    assert features.loc["Training/Grade:A/ok0.jpg", "label"] == "Grade:A"


def test_kind4_links_followed_dangling_reported_loops_never_followed(field):
    _, features, errors = field
    assert features.loc["Training/Linked/ok0.jpg", "label"] == "Linked"
    assert "dangling symbolic link" in errors.loc["Training/Apple/gone.jpg", "error"]
    assert "loop" in errors.loc["Training/Plum/loop", "error"]
    assert not any("/loop/" in path for path in features.index)
    assert {p for p in features.index if p.startswith("Training/Plum/")} == {"Training/Plum/ok0.jpg", "Training/Plum/ok1.jpg"}


def test_kind5_a_file_over_the_binary_limit_is_an_error_row(field):
    _, features, errors = field
    reason = errors.loc["Training/Banana/big.png", "error"]
    assert reason.startswith("file too large (") and reason.endswith("bytes, limit 1000000)")
    assert "Training/Banana/ok1.jpg" in features.index


def test_kind6_exif_orientation_is_applied(field):
    _, features, _ = field
    upright = features.loc["Training/Phone/upright.jpg"]
    for orientation in (3, 6, 8):
        turned = features.loc[f"Training/Phone/orientation{orientation}.jpg"]
        assert cosine(turned["features"], upright["features"]) >= 0.99
        assert (turned["width"], turned["height"]) == (200, 140)
    assert "Training/Phone/corrupt_exif.jpg" in features.index


def test_kind7_phone_formats_are_read_and_bad_ones_name_their_format(field):
    _, features, errors = field
    for name in ("a.heic", "b.HEIF", "heic_behind.jpg", "c.webp", "d.bmp", "e.tif", "f.gif"):
        assert f"Training/Formats/{name}" in features.index, name
    expected = {"paper.jpg": "PDF", "page.jpg": "HTML", "fake_avif.jpg": "AVIF", "broken.webp": "WebP"}
    for name, fmt in expected.items():
        reason = errors.loc[f"Training/Formats/{name}", "error"]
        assert fmt in reason and "starts" not in reason, reason


def test_kind8_colour_key_transparency_is_composited_on_white(field):
    _, features, _ = field
    vector = features["features"]
    assert cosine(vector["Training/Clear/keyed_rgb.png"], vector["Training/Clear/on_white.png"]) >= 0.99
    assert cosine(vector["Training/Clear/keyed_l.png"], vector["Training/Clear/gray_on_white.png"]) >= 0.99


def test_kind10_images_outside_class_folders_are_error_rows(field):
    _, features, errors = field
    for stray in ("stray_root.jpg", "Training/stray_in_split.jpg"):
        assert "outside a class folder" in errors.loc[stray, "error"]
        assert stray not in features.index
    assert features.loc["Training/Apple/batch2/a3.jpg", "label"] == "Apple"
    assert features.loc["Training/Apple/batch2/a3.jpg", "split"] == "Training"


def test_kind11_hidden_names_are_one_rule(field):
    record, features, errors = field
    everything = list(features.index) + list(errors.index) + record["ignored_files"]
    assert not any(part.startswith(("_", ".")) for path in everything for part in path.split("/"))
    assert record["counts"]["found"] == len(features) + len(errors) + record["counts"]["ignored"]


# --------------------------------------------------------------------------- own runs


LOCALE_CLASSES = ["Pêche", "Äpfel", "Ягода", "Mandarine 橘子", "Fraise 🍓"]


def test_kind3_any_locale_finds_every_file(tmp_path, sample_dir, model_file):
    root = tmp_path / "Früchte"
    copy_fruits(sample_dir, root / "Banana")
    for klass in LOCALE_CLASSES:
        copy_fruits(sample_dir, root / klass, count=1 if klass != "Pêche" else 2)
    nfd = unicodedata.normalize("NFD", "Pêche")  # the same name in NFD: a folder of its own
    copy_fruits(sample_dir, root / nfd, count=1)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LC_") and key != "LANG"}
    env["LC_ALL"] = "C"
    record, features, errors = run_cli(root, tmp_path / "out", model_file, env=env)
    assert record["counts"]["found"] == 9 and len(features) == 9 and len(errors) == 0
    labels = set(features["label"])
    assert set(LOCALE_CLASSES) <= labels and nfd in labels  # NFC and NFD are two labels: bytes kept
    for path in features.index:
        assert (root / path).is_file(), path  # the path round-trips to the file on disk


def test_kind9_degenerate_data_gives_strict_json_and_finite_pca(tmp_path, sample_dir, model_file):
    root = tmp_path / "same"
    folder = root / "Apple"
    folder.mkdir(parents=True)
    data = fruit(sample_dir).read_bytes()
    for index in range(4):
        (folder / f"copy{index}.jpg").write_bytes(data)
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    with open(folder / "huge.jpg", "wb") as huge:  # sparse: over 2 GB on paper, no disk used
        huge.truncate(2**31 + 10)
    output = tmp_path / "out"
    record, features, errors = run_cli(root, output, model_file)
    text = (output / "run.json").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert record["pca"]["k"] in (0, 1) and "zero total variance" in record["pca"]["warning"]
    assert len(features) == 4
    assert all(np.isfinite(np.asarray(row, dtype=np.float64)).all() for row in features["pca"])
    assert errors.loc["Apple/huge.jpg", "error"] == f"file too large ({2**31 + 10} bytes, limit {2**31 - 1})"
    assert "Apple/truncated.jpg" in errors.index
