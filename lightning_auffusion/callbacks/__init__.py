"""Lightning callbacks: sample/audio logging, prediction and attention-map writers, evaluation, metrics log, vocoder samples.

Names load from their submodule on first use (``lightning_auffusion._exports``).
"""

from lightning_auffusion._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "AttentionMapWriter": "attention_maps",
        "AudioPredictionWriter": "audio_writer",
        "EvaluationCallback": "evaluation",
        "MetricsLogCallback": "metrics_log",
        "SampleLoggingCallback": "sample_logging",
        "VocoderSamplesCallback": "vocoder_samples",
    },
)
