"""The Riffusion baseline inside AuffusionLDM: 8-bit per-clip images in training, Griffin-Lim decoding by choice."""

from __future__ import annotations

import pytest
import torch

from lightning_auffusion.audio import ImageConfig
from lightning_auffusion.diffusion import sampling
from lightning_auffusion.errors import UserInputError
from tests.helpers import TINY_FRAMES, single_torch_thread, tiny_ldm, tone_batch  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


class RefusingVocoder(torch.nn.Module):
    """A vocoder that must not be used."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the vocoder ran although waveform_decoder is griffin_lim")


def test_riffusion_trains_on_8_bit_images_and_decodes_with_griffin_lim(monkeypatch):
    model = tiny_ldm(image=ImageConfig(mode="riffusion"), waveform_decoder="griffin_lim", griffin_lim_iters=2)
    batch = tone_batch(2)
    images = model.images_from_audio(batch["audio"])
    levels = (images + 1) / 2 * 255
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)  # the VAE sees the 8-bit image
    assert torch.isfinite(model.diffusion_loss(batch))
    model.vocoder = RefusingVocoder()
    calls = []
    original = sampling._griffin_lim
    monkeypatch.setattr(
        sampling, "_griffin_lim", lambda pipe, logmel: calls.append(pipe.griffin_lim_iters) or original(pipe, logmel)
    )
    out = sampling.generate(
        model, ["a dog barks"], num_inference_steps=2, scheduler="ddim", duration_seconds=TINY_FRAMES * 160 / 16000
    )
    assert calls == [2] and torch.isfinite(out.audio).all() and out.audio.abs().max() > 0


def test_waveform_decoder_is_checked():
    with pytest.raises(UserInputError, match="waveform_decoder must be 'vocoder' or 'griffin_lim'"):
        tiny_ldm(waveform_decoder="hifigan")
