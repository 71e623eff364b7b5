"""Feature extractors of the objective metrics (Cnn14, VGGish, CLAP) and their weight files.

Names load from their submodule on first use (``lightning_auffusion._exports``).
"""

from lightning_auffusion._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "ClapEmbedder": "clap",
        "load_clap": "clap",
        "offline_tokenizer": "clap",
        "prepare_clap_audio": "clap",
        "Cnn14": "cnn14",
        "Cnn14Config": "cnn14",
        "Cnn14Extractor": "cnn14",
        "load_cnn14": "cnn14",
        "prepare_cnn14_audio": "cnn14",
        "VGGish": "vggish",
        "VGGishConfig": "vggish",
        "VGGishExtractor": "vggish",
        "load_vggish": "vggish",
        "prepare_vggish_audio": "vggish",
        "ChecksumError": "weights",
        "MissingWeightsError": "weights",
        "WEIGHT_FILES": "weights",
        "WeightFile": "weights",
        "WeightStatus": "weights",
        "default_weights_dir": "weights",
        "locate_weights": "weights",
    },
)
