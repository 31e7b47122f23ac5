"""The notebooks, executed top to bottom on tiny parameters: a failing cell fails the test."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TINY = {
    "walkthrough.ipynb": ('N_VIDEOS = 24\nEPOCHS = 1\nMETHODS = ["static-int8-ort"]\nMEASURE_SECONDS = 0.2\n'
                          'OUT = "runs/notebook"'),
    "classification.ipynb": ('EPOCHS = 2\nMETHODS = ["static-int8-ort"]\nMEASURE_SECONDS = 0.2\n'
                             'OUT = "runs/notebook-cifar10"'),
}
FIGURES = {"walkthrough.ipynb": 5, "classification.ipynb": 1}  # images the run must show inline


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs_top_to_bottom_from_the_package_alone(name, tmp_path):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code)  # stored without outputs
    (params,) = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    params.source = TINY[name]
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= FIGURES[name]
    text = "".join(o.get("text", "") for o in outputs)
    assert "echolite 0." in text and "torch" in text  # the set-up cell printed versions and device
    if name == "walkthrough.ipynb":
        assert "% predicted" in text and (tmp_path / "runs" / "notebook" / "results.json").is_file()
