"""Optional CLAP-score backend on the ``laion_clap`` package (``pip install laion-clap``).

Used when the package is importable and ``630k-audioset-best.pt`` is in the weights directory (or given
explicitly): ``CLAP_Module(enable_fusion=False, amodel="HTSAT-tiny")`` with that checkpoint, which is the
checkpoint transformers' laion/clap-htsat-unfused was converted from. Same interface as ``ClapEmbedder``;
audio goes in prepared by ``prepare_clap_audio`` (48 kHz, 480000 samples).
"""

from __future__ import annotations

import importlib.util
import logging
import os

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_auffusion.metrics.extractors.weights import MissingWeightsError, WeightStatus, locate_weights

log = logging.getLogger(__name__)


def laion_clap_installed() -> bool:
    return importlib.util.find_spec("laion_clap") is not None


class LaionClapEmbedder:
    """Audio/text embeddings through ``laion_clap.CLAP_Module``."""

    backend = "laion_clap"

    def __init__(self, module, device: str | torch.device = "cpu", batch_size: int = 8) -> None:
        self.module = module
        self.device = torch.device(device)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def audio_embeddings(self, clips: list[Tensor]) -> Tensor:
        out = []
        for start in range(0, len(clips), self.batch_size):
            batch = torch.stack([c.float() for c in clips[start : start + self.batch_size]]).to(self.device)
            emb = self.module.get_audio_embedding_from_data(x=batch, use_tensor=True)
            out.append(F.normalize(torch.as_tensor(emb).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 512)

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> Tensor:
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            if len(chunk) == 1:  # laion_clap's tokenizer squeezes a batch of one
                emb = self.module.get_text_embedding(chunk * 2, use_tensor=True)[:1]
            else:
                emb = self.module.get_text_embedding(chunk, use_tensor=True)
            out.append(F.normalize(torch.as_tensor(emb).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 512)


def load_laion_clap(
    path: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    download: bool = False,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
) -> tuple[LaionClapEmbedder, WeightStatus]:
    """The laion_clap backend; ``ImportError`` without the package, ``MissingWeightsError`` without the file."""
    if not laion_clap_installed():
        raise ImportError("the laion_clap backend needs the optional package: pip install laion-clap")
    checkpoint = locate_weights("laion_clap_630k_audioset", path=path, weights_dir=weights_dir, download=download)
    import laion_clap

    module = laion_clap.CLAP_Module(enable_fusion=False, amodel="HTSAT-tiny", device=str(device))
    module.load_ckpt(str(checkpoint), verbose=False)
    module.eval()
    return LaionClapEmbedder(module, device, batch_size), WeightStatus("CLAP (laion_clap)", True, str(checkpoint))


def laion_clap_available(path: str | os.PathLike | None = None, weights_dir: str | os.PathLike | None = None) -> bool:
    """True when the package is importable and its checkpoint is present (nothing is loaded)."""
    if not laion_clap_installed():
        return False
    try:
        locate_weights("laion_clap_630k_audioset", path=path, weights_dir=weights_dir, verify=False)
    except MissingWeightsError:
        return False
    return True
