"""Spectrogram figures as PNG files (matplotlib's Agg backend, no display needed).

Shared by the generator, the prediction writer and the logging callbacks: everything that draws a
log-mel spectrogram goes through :func:`save_spectrogram_png` or :func:`spectrogram_figure`, so all
figures share one look (time in seconds on x, mel band on y, low frequencies at the bottom).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


def _as_numpy_2d(logmel: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(logmel, torch.Tensor):
        logmel = logmel.detach().float().cpu().numpy()
    array = np.asarray(logmel, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"a spectrogram must be 2-D (n_mels, frames), got shape {tuple(array.shape)}")
    if array.size == 0:
        raise ValueError("cannot draw an empty spectrogram")
    return np.nan_to_num(array, nan=float(np.nanmin(array)) if np.isfinite(array).any() else 0.0)


def spectrogram_figure(
    logmel: np.ndarray | torch.Tensor,
    title: str | None = None,
    sample_rate: int = 16000,
    hop_length: int = 160,
    cmap: str = "viridis",
    width_inches: float = 10.0,
    height_inches: float = 3.5,
    colorbar: bool = True,
):
    """A matplotlib ``Figure`` of a log-mel (n_mels, frames); the caller closes it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    array = _as_numpy_2d(logmel)
    n_mels, frames = array.shape
    fig = Figure(figsize=(width_inches, height_inches), dpi=100)
    FigureCanvasAgg(fig)  # Agg canvas attached directly: no pyplot, no global backend switch
    ax = fig.add_subplot(1, 1, 1)
    seconds = frames * hop_length / sample_rate
    image = ax.imshow(
        array,
        origin="lower",
        aspect="auto",
        cmap=cmap,
        interpolation="nearest",
        extent=(0.0, seconds, 0, n_mels),
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    if title:
        ax.set_title(title if len(title) <= 100 else title[:97] + "...", fontsize=9)
    if colorbar:
        fig.colorbar(image, ax=ax, label="ln mel")
    fig.tight_layout()
    return fig


def save_spectrogram_png(
    logmel: np.ndarray | torch.Tensor,
    path: str | os.PathLike,
    title: str | None = None,
    sample_rate: int = 16000,
    hop_length: int = 160,
    cmap: str = "viridis",
) -> Path:
    """Draw a log-mel spectrogram (n_mels, frames) to ``path`` (PNG) and return the path."""
    fig = spectrogram_figure(logmel, title=title, sample_rate=sample_rate, hop_length=hop_length, cmap=cmap)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(out), format="png")
    return out
