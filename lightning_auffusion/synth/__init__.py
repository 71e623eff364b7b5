"""Synthetic captioned sounds whose captions can be verified, and the analyser that checks them.

Names load from their submodule on first use (``lightning_auffusion._exports``).
"""

from lightning_auffusion._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "AnalyserConfig": "analyser",
        "analyse": "analyser",
        "score_caption": "analyser",
        "HELDOUT_COMBINATIONS": "attributes",
        "LOUDNESSES": "attributes",
        "NOISES": "attributes",
        "PATTERNS": "attributes",
        "PITCHES": "attributes",
        "PITCH_RANGES_HZ": "attributes",
        "SOURCES": "attributes",
        "TONES": "attributes",
        "heldout_prompts": "attributes",
        "is_heldout": "attributes",
        "parse_caption": "attributes",
        "render_captions": "attributes",
        "sample_events": "attributes",
        "synth": "command",
        "SynthConfig": "generator",
        "render_clip": "generator",
    },
)
