"""Small in-memory audio batches in the data module's batch format, and tiny vocoder configs."""

from __future__ import annotations

import math

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lightning_auffusion.vocoder.config import DiscriminatorConfig, GeneratorConfig

TINY_GENERATOR = dict(
    resblock="2",
    upsample_rates=[5, 4, 2, 2, 2],
    upsample_kernel_sizes=[11, 8, 4, 4, 4],
    upsample_initial_channel=32,
    resblock_kernel_sizes=[3],
    resblock_dilation_sizes=[[1, 3]],
)
TINY_DISCRIMINATORS = dict(
    periods=[2, 3],
    period_channels=[4, 8, 8],
    num_scales=2,
    scale_channels=[4, 8, 8],
    scale_kernel_sizes=[15, 41, 5],
    scale_strides=[1, 4, 1],
    scale_groups=[1, 4, 1],
)


def tiny_generator_config(**overrides) -> GeneratorConfig:
    return GeneratorConfig(**{**TINY_GENERATOR, **overrides})


def tiny_discriminator_config(**overrides) -> DiscriminatorConfig:
    return DiscriminatorConfig(**{**TINY_DISCRIMINATORS, **overrides})


def tone(
    num_samples: int, freq: float, sample_rate: int = 16000, amplitude: float = 0.5, harmonics: int = 4
) -> torch.Tensor:
    t = torch.arange(num_samples, dtype=torch.float64) / sample_rate
    wave = sum(torch.sin(2 * math.pi * freq * k * t) / k for k in range(1, harmonics + 1) if freq * k < sample_rate / 2)
    return (amplitude * wave / wave.abs().max()).float()


class ToneDataset(Dataset):
    """Harmonic tones of different pitches; every clip is ``num_samples`` long, the first half of clips padded."""

    def __init__(self, n: int, num_samples: int, sample_rate: int = 16000, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.freqs = (110 * 2 ** (torch.rand(n, generator=gen) * 4)).tolist()
        self.num_samples, self.sample_rate = num_samples, sample_rate

    def __len__(self) -> int:
        return len(self.freqs)

    def __getitem__(self, i: int) -> dict:
        valid = self.num_samples if i % 2 else self.num_samples * 3 // 4
        audio = torch.zeros(self.num_samples)
        audio[:valid] = tone(valid, self.freqs[i], self.sample_rate)
        return {
            "audio": audio,
            "num_samples": torch.tensor(valid),
            "caption": "a tone",
            "captions": ["a tone"],
            "key": f"tone{i}",
        }


def _collate(items: list[dict]) -> dict:
    return {
        "audio": torch.stack([x["audio"] for x in items]),
        "num_samples": torch.stack([x["num_samples"] for x in items]),
        "caption": [x["caption"] for x in items],
        "captions": [x["captions"] for x in items],
        "key": [x["key"] for x in items],
    }


class ToneDataModule(LightningDataModule):
    def __init__(
        self, n_train: int = 8, n_val: int = 2, num_samples: int = 4000, batch_size: int = 2, sample_rate: int = 16000
    ) -> None:
        super().__init__()
        self.n_train, self.n_val, self.num_samples, self.batch_size, self.sample_rate = (
            n_train,
            n_val,
            num_samples,
            batch_size,
            sample_rate,
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            ToneDataset(self.n_train, self.num_samples, self.sample_rate, 0),
            self.batch_size,
            shuffle=True,
            collate_fn=_collate,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            ToneDataset(self.n_val, self.num_samples, self.sample_rate, 1), self.batch_size, collate_fn=_collate
        )
