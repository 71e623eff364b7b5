"""notebooks/manipulations.ipynb runs end to end (on a tiny checkpoint), so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "manipulations.ipynb"


def test_manipulations_notebook_runs(tiny_checkpoint, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    out = tmp_path / "notebook_out"
    env = {
        "AUFFUSION_CHECKPOINT": tiny_checkpoint,
        "AUFFUSION_NOTEBOOK_OUT": str(out),
        "AUFFUSION_STEPS": "3",
        "AUFFUSION_DURATION": "1.28",
        "OMP_NUM_THREADS": "1",  # the kernel is a separate process: keep it to one thread on a shared machine
        "HF_HUB_OFFLINE": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    written = {p.name for p in out.iterdir()}
    for name in (
        "attention.png",
        "source.wav",
        "style_0.0.wav",
        "style_0.7.wav",
        "inpaint.wav",
        "word_swap.wav",
        "word_swap_source.wav",
        "reweight.wav",
        "reweight.png",
    ):
        assert name in written, name
