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
