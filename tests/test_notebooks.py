"""The notebooks: paired with their jupytext .py files, committed without outputs, and run headless."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_one_fault_walkthrough", "02_prefault_policy", "03_large_folios"]


def _sources(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("name", NAMES)
def test_paired_and_clean(name):
    ipynb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    py = jupytext.read(NOTEBOOKS / f"{name}.py")
    assert _sources(ipynb) == _sources(py), "the .ipynb and .py differ: run `jupytext --sync notebooks/*.py`"
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "commit notebooks without outputs"


@pytest.mark.parametrize("name", NAMES)
def test_runs_headless_and_draws(name, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTFAULT_NB_SCALE", "0.03")
    monkeypatch.setenv("FASTFAULT_NB_WORKERS", "1")
    monkeypatch.setenv("FASTFAULT_NB_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the notebook drew no figure"
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors
