"""Execute notebooks/manipulations.ipynb and store it with its (small) outputs, so it reads on a code host.

    AUFFUSION_CHECKPOINT=runs/ldm_quickstart/checkpoints/last.ckpt python scripts/store_notebook.py

The notebook reads its parameters from the environment (AUFFUSION_CHECKPOINT, AUFFUSION_STEPS, ...). What is
stored: text and figures (PNGs re-encoded with a 256-colour palette); left out: audio players (code hosts
do not play them and they are the bulk of the file; the WAVs are in the notebook's output folder) and
stderr (library warnings of the machine it ran on). CI executes the notebook itself (tests/attention).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "manipulations.ipynb"


def _small_png(data: str) -> str:
    import base64

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB").quantize(colors=256)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def keep(output) -> bool:
    if output.get("output_type") == "stream":
        return output.get("name") == "stdout"
    return "text/html" not in output.get("data", {}) or "<audio" not in output["data"]["text/html"]


def main() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs if keep(o)]
        for output in cell.outputs:
            if "image/png" in output.get("data", {}):
                output["data"]["image/png"] = _small_png(output["data"]["image/png"])
    nbformat.write(notebook, NOTEBOOK)
    print(f"stored {NOTEBOOK} ({os.path.getsize(NOTEBOOK) / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
