"""Objective metrics of text-to-audio generation (the evaluation toolbox's definitions, PANNs backbone).

| metric | class | features |
|---|---|---|
| FD | ``FrechetDistance`` | Cnn14 2048-d clip embeddings |
| FAD | ``FrechetAudioDistance`` | VGGish 128-d frame embeddings |
| KL | ``KLDivergence`` | Cnn14 logits, paired by clip id |
| IS | ``InceptionScore`` | Cnn14 logits of generated clips |
| CLAP | ``ClapScore`` | CLAP audio and text embeddings |
| alignment | ``AlignmentAccuracy`` | the synthetic analyser's verdicts |

Each is a ``torchmetrics.Metric`` (DDP-safe); ``MetricSuite`` runs the extractors once and feeds them all.
"""

from lightning_auffusion.metrics.alignment import AlignmentAccuracy
from lightning_auffusion.metrics.clap_score import ClapScore
from lightning_auffusion.metrics.fad import FrechetAudioDistance
from lightning_auffusion.metrics.fd import FrechetDistance
from lightning_auffusion.metrics.frechet import frechet_distance, frechet_distance_from_features
from lightning_auffusion.metrics.inception_score import InceptionScore, inception_score
from lightning_auffusion.metrics.kl import KLDivergence, PairingReport, UnpairedClipsError, kl_ref_to_gen
from lightning_auffusion.metrics.suite import METRICS, MetricSuite

__all__ = [
    "METRICS",
    "AlignmentAccuracy",
    "ClapScore",
    "FrechetAudioDistance",
    "FrechetDistance",
    "InceptionScore",
    "KLDivergence",
    "MetricSuite",
    "PairingReport",
    "UnpairedClipsError",
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_score",
    "kl_ref_to_gen",
]
