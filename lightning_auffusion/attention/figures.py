"""Figures of per-token cross-attention over the spectrogram (the paper's Figure 2), and W&B helpers.

Drawn with matplotlib's object API on an Agg canvas (no pyplot state, no backend switch), so it works in
training callbacks, CLI commands and notebooks alike. The first panel is the spectrogram itself; each
further panel is the spectrogram in grey with one token's map on top, normalised to its own maximum.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from lightning_auffusion.attention.capture import TokenAttention

_PIECE_MARKS = ("</w>", "\u2581", "\u0120", "##")


def clean_piece(label: str, with_encoder: bool) -> str:
    """ "clip:dog</w>" -> "dog" (or "clip: dog" with ``with_encoder``): tokenizer marks removed."""
    encoder, _, piece = label.partition(":")
    for mark in _PIECE_MARKS:
        piece = piece.replace(mark, "")
    piece = piece or label.partition(":")[2]
    return f"{encoder}: {piece}" if with_encoder else piece


def image_background(image) -> np.ndarray:
    """The spectrogram image as the VAE sees it, (3, H, W) or (H, W) in [-1, 1] -> (H, W) in [0, 1]."""
    array = (
        image.detach().cpu().float() if torch.is_tensor(image) else torch.as_tensor(np.asarray(image, dtype=np.float32))
    )
    if array.dim() == 3:
        array = array[0]
    if array.dim() != 2:
        raise ValueError(f"expected a spectrogram image (3, H, W) or (H, W), got shape {tuple(array.shape)}")
    return ((array + 1.0) / 2.0).clamp(0.0, 1.0).numpy()


def attention_figure(
    attention: TokenAttention,
    image=None,
    *,
    skip_padding: bool = True,
    skip_special: bool = True,
    max_tokens: int = 24,
    columns: int = 2,
    cmap: str = "jet",
    alpha: float = 0.55,
    normalize: str = "max",
    panel_size: tuple[float, float] = (5.0, 1.6),
    title: str | None = None,
):
    """A matplotlib ``Figure``: the spectrogram, then one panel per kept token with its heat map.

    ``attention.maps`` (tokens, H, W) are in the orientation of the spectrogram *image* the U-Net works on;
    ``image`` is that image ((3, H, W) or (H, W) in [-1, 1], e.g. ``GenerationOutput.image[i]``), so map and
    spectrogram line up exactly whatever the front end's mel-axis flip. Each map is scaled for display by
    its maximum (``normalize="max"``, prompt-to-prompt's way) or stretched to [min, max] (``"minmax"``).
    """
    if normalize not in ("max", "minmax"):
        raise ValueError(f"normalize must be 'max' or 'minmax', got {normalize!r}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keep = attention.keep(skip_padding=skip_padding, skip_special=skip_special)[:max_tokens]
    encoders = {label.partition(":")[0] for label in attention.labels}
    panels = 1 + len(keep)
    cols = max(1, min(columns, panels))
    rows = -(-panels // cols)
    fig = Figure(figsize=(panel_size[0] * cols, panel_size[1] * rows + 0.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    height, width = attention.maps.shape[-2:]
    background = None
    if image is not None:
        background = image_background(image)
        if background.shape != (height, width):
            resized = torch.nn.functional.interpolate(
                torch.from_numpy(background.copy())[None, None],
                size=(height, width),
                mode="bilinear",
                align_corners=False,
            )
            background = resized[0, 0].numpy()
    first = axes[0][0]
    if background is not None:
        first.imshow(background, cmap="magma", aspect="auto", origin="upper")
    first.set_title("spectrogram", fontsize=9)
    for n, index in enumerate(keep, start=1):
        ax = axes[n // cols][n % cols]
        heat = attention.maps[index].detach().cpu().float().numpy()
        floor = float(heat.min()) if normalize == "minmax" else 0.0
        heat = (heat - floor) / max(float(heat.max()) - floor, 1e-12)
        if background is not None:
            ax.imshow(background, cmap="gray", aspect="auto", origin="upper")
        ax.imshow(
            heat,
            cmap=cmap,
            alpha=alpha if background is not None else 1.0,
            aspect="auto",
            origin="upper",
            vmin=0,
            vmax=1,
        )
        ax.set_title(clean_piece(attention.labels[index], with_encoder=len(encoders) > 1), fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for n in range(panels, rows * cols):
        axes[n // cols][n % cols].set_visible(False)
    fig.suptitle(title if title is not None else attention.prompt, fontsize=10)
    return fig


def figure_to_array(fig) -> np.ndarray:
    """(H, W, 3) uint8 RGB rendering of a matplotlib figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def figure_png(fig, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> str:
    """Write the figure as PNG (parent folders created) and return the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(figure_png(fig, dpi=dpi))
    return path


def wandb_image(fig_or_array, caption: str | None = None):
    """A ``wandb.Image`` of a figure or an RGB array (for ``WandbLogger.log_image`` or ``wandb.log``)."""
    import wandb

    array = fig_or_array if isinstance(fig_or_array, np.ndarray) else figure_to_array(fig_or_array)
    return wandb.Image(array, caption=caption)
