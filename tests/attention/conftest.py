"""Shared tiny models for the attention tests: non-square latents, one or two concatenated encoders."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import TINY_MEL, tiny_ldm

# 32 mels x 128 frames -> tiny VAE (factor 4) -> latent 4 x 8 x 32 (non-square, 1:4 like Auffusion's 32 x 128)
NONSQUARE = dict(n_mels=32, n_frames=128)
STEPS = 3


def nonsquare_ldm(kinds=("clip",), seed: int = 0, **kwargs):
    from lightning_auffusion.audio import MelConfig

    return tiny_ldm(
        kinds=kinds,
        seed=seed,
        mel=MelConfig(**{**TINY_MEL, "n_mels": NONSQUARE["n_mels"]}),
        n_frames=NONSQUARE["n_frames"],
        **kwargs,
    )


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread: on a shared 2-core machine, two threads per process oversubscribe badly
    (a tiny generation takes 0.4 s with one thread and 2-10 s with two under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ldm():
    return nonsquare_ldm(("clip",)).eval()


@pytest.fixture(scope="session")
def ldm_concat():
    """CLIP + T5 concatenated conditioning (154 tokens), like the paper's CLAP + Flan-T5."""
    return nonsquare_ldm(("clip", "t5"), seed=1).eval()


@pytest.fixture(scope="session")
def pipeline(ldm):
    from lightning_auffusion.diffusion.pipeline import AuffusionPipeline

    return AuffusionPipeline.from_module(ldm, use_ema=False)


@pytest.fixture(scope="session")
def pipeline_concat(ldm_concat):
    from lightning_auffusion.diffusion.pipeline import AuffusionPipeline

    return AuffusionPipeline.from_module(ldm_concat, use_ema=False)


@pytest.fixture(scope="session")
def source_wave():
    """1.28 s harmonic tone with a moving envelope (fills the 128-frame clip)."""
    t = torch.arange(int(1.28 * 16000), dtype=torch.float64) / 16000
    wave = sum(torch.sin(2 * torch.pi * 330.0 * k * t) / k for k in (1, 2, 3)) * (
        0.6 + 0.4 * torch.sin(2 * torch.pi * 2 * t)
    )
    return (0.3 * wave).float()


class PatchVAE(nn.Module):
    """A strictly local stand-in VAE (each latent cell is the mean of one f x f patch, decoding repeats it).

    A random AutoencoderKL spreads any local change over the whole image (group norms, mid-block attention),
    so it cannot show whether inpainting keeps the audio outside the span; this one can.
    """

    def __init__(self, factor: int = 4, channels: int = 4) -> None:
        super().__init__()
        self.factor, self.channels = factor, channels
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the module a device and dtype
        blocks = [1] * (factor.bit_length())  # 2 ** (len - 1) == factor
        self.config = SimpleNamespace(block_out_channels=blocks, scaling_factor=1.0)

    def encode(self, image):
        latent = F.avg_pool2d(image[:, :1], self.factor).repeat(1, self.channels, 1, 1)
        dist = SimpleNamespace(mode=lambda: latent, sample=lambda generator=None: latent)
        return SimpleNamespace(latent_dist=dist)

    def decode(self, latents):
        image = F.interpolate(latents[:, :1], scale_factor=self.factor, mode="nearest").repeat(1, 3, 1, 1)
        return SimpleNamespace(sample=image)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """An AuffusionLDM checkpoint (non-square tiny model) as `fit` would write it, loadable by path."""
    import lightning

    model = nonsquare_ldm(("clip",), sampling=dict(num_inference_steps=STEPS, duration_seconds=1.0))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    return str(path)


@pytest.fixture(scope="session")
def source_file(tmp_path_factory, source_wave) -> str:
    from lightning_auffusion.audio.io import save_wav

    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    save_wav(path, source_wave, 16000)
    return str(path)
