"""Synthetic captioned sounds whose captions can be verified, and the analyser that checks them."""

from .analyser import AnalyserConfig, analyse, score_caption
from .attributes import (
    HELDOUT_COMBINATIONS,
    LOUDNESSES,
    NOISES,
    PATTERNS,
    PITCH_RANGES_HZ,
    PITCHES,
    SOURCES,
    TONES,
    heldout_prompts,
    is_heldout,
    parse_caption,
    render_captions,
    sample_events,
)
from .command import synth
from .generator import SynthConfig, render_clip

__all__ = [
    "AnalyserConfig",
    "HELDOUT_COMBINATIONS",
    "LOUDNESSES",
    "NOISES",
    "PATTERNS",
    "PITCHES",
    "PITCH_RANGES_HZ",
    "SOURCES",
    "SynthConfig",
    "TONES",
    "analyse",
    "heldout_prompts",
    "is_heldout",
    "parse_caption",
    "render_captions",
    "render_clip",
    "sample_events",
    "score_caption",
    "synth",
]
