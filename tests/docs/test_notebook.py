"""The walkthrough notebook (docs/notebooks/walkthrough.ipynb) runs from top to bottom on the
shared sample (a few of its classes: `ORCHARD_SAMPLE`), in a Jupyter kernel on this interpreter, as
a newcomer would run it."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

import orchard
from tests.conftest import REPO
from tests.fixtures.sample import images_in

NOTEBOOK = REPO / "docs" / "notebooks" / "walkthrough.ipynb"
KERNEL_NAME = "orchard-tests"
CELL_TIMEOUT_S = 900  # one cell featurizes every image (the whole sample: minutes on a busy 2-core machine)


def test_committed_notebook_is_clean():
    """Committed without outputs: small, and its diffs show only what a person changed."""
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    assert all(not cell["outputs"] and cell["execution_count"] is None for cell in code)


def _install_kernel(folder: Path) -> None:
    """A kernel spec running this very interpreter (not whatever `python` is on PATH)."""
    spec = folder / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "orchard tests", "language": "python",
    }), encoding="utf-8")


def _text_of(outputs) -> str:
    parts = []
    for output in outputs:
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


@pytest.mark.slow
def test_walkthrough_notebook_runs_on_the_sample(sample_subset, tmp_path, monkeypatch):
    # what the notebook shows, on a few classes of the sample (the whole sample: the same cells,
    # four times the featurizing)
    import nbclient  # the `test` extras: nbclient, nbformat, ipykernel
    import nbformat

    _install_kernel(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # the kernel imports the same orchard as these tests (a checkout's src/ or the installed one)
    package_root = str(Path(orchard.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("ORCHARD_SAMPLE", str(sample_subset))
    monkeypatch.setenv("ORCHARD_WALKTHROUGH_OUTPUT", str(tmp_path / "out"))

    notebook = nbformat.read(str(NOTEBOOK), as_version=4)
    client = nbclient.NotebookClient(
        notebook, kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # cwd docs/notebooks, as in Jupyter
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    images = [output for cell in code for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 3, "expected the scree plot, the scatter plot and the timeline as images"
    text = "\n".join(_text_of(cell.outputs) for cell in code)
    accuracy = re.search(r"Test accuracy: ([0-9.]+)", text)
    assert accuracy, "the notebook printed no 'Test accuracy: ...'"
    assert float(accuracy.group(1)) > 0.8  # about 0.99 on the sample with MobileNetV2 + PCA
    assert f"{images_in(sample_subset)} images, 0 errors" in text  # every image of ORCHARD_SAMPLE featurized
    assert f"({images_in(sample_subset, 'Test')} Test photos, trained on {images_in(sample_subset, 'Training')})" in text
