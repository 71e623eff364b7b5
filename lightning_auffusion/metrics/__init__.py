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

Names load from their submodule on first use (``lightning_auffusion._exports``).
"""

from lightning_auffusion._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "AlignmentAccuracy": "alignment",
        "ClapScore": "clap_score",
        "FrechetAudioDistance": "fad",
        "FrechetDistance": "fd",
        "frechet_distance": "frechet",
        "frechet_distance_from_features": "frechet",
        "InceptionScore": "inception_score",
        "KLDivergence": "kl",
        "PairingReport": "kl",
        "UnpairedClipsError": "kl",
        "kl_ref_to_gen": "kl",
        "METRICS": "suite",
        "MetricSuite": "suite",
    },
)
