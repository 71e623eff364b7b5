"""Feature extractors of the objective metrics (Cnn14, VGGish, CLAP) and their weight files."""

from lightning_auffusion.metrics.extractors.clap import ClapEmbedder, load_clap, offline_tokenizer, prepare_clap_audio
from lightning_auffusion.metrics.extractors.cnn14 import (
    Cnn14,
    Cnn14Config,
    Cnn14Extractor,
    load_cnn14,
    prepare_cnn14_audio,
)
from lightning_auffusion.metrics.extractors.vggish import (
    VGGish,
    VGGishConfig,
    VGGishExtractor,
    load_vggish,
    prepare_vggish_audio,
)
from lightning_auffusion.metrics.extractors.weights import (
    WEIGHT_FILES,
    ChecksumError,
    MissingWeightsError,
    WeightFile,
    WeightStatus,
    default_weights_dir,
    locate_weights,
)

__all__ = [
    "WEIGHT_FILES",
    "ChecksumError",
    "ClapEmbedder",
    "Cnn14",
    "Cnn14Config",
    "Cnn14Extractor",
    "MissingWeightsError",
    "VGGish",
    "VGGishConfig",
    "VGGishExtractor",
    "WeightFile",
    "WeightStatus",
    "default_weights_dir",
    "load_clap",
    "load_cnn14",
    "load_vggish",
    "locate_weights",
    "offline_tokenizer",
    "prepare_clap_audio",
    "prepare_cnn14_audio",
    "prepare_vggish_audio",
]
