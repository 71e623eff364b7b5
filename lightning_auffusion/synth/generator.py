"""Signal synthesis for the synthetic captioned sounds (numpy, vectorised).

Event ``i`` of ``n`` fills the ``i``-th of ``n`` equal consecutive segments of the clip.
Tones are additive (band-limited: harmonics stop below 0.95 x Nyquist, so no aliasing);
noises are white Gaussian noise shaped in the frequency domain to a power slope of
0 (white), -1 (pink) or -2 (brown) per decade of frequency.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .attributes import NOISES, PITCH_RANGES_HZ, TONES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthConfig:
    """Signal parameters of the generator (all knobs in one place)."""

    loud_rms_dbfs: float = -14.0  # RMS of the 'on' part of a loud event
    quiet_rms_dbfs: float = -34.0  # RMS of the 'on' part of a quiet event
    level_jitter_db: float = 2.0  # uniform +- jitter around the level
    beep_rate_hz: tuple[float, float] = (2.0, 5.0)  # on/off cycles per second
    beep_duty: tuple[float, float] = (0.4, 0.6)  # fraction of each cycle that is on
    ramp_s: float = 0.005  # raised-cosine ramp of every on/off edge
    fade_s: float = 0.01  # fade at the borders of each event's segment
    noise_corner_hz: float = 40.0  # coloured noise slope starts here (flat below, no DC)
    max_harmonics: int = 64
    wavetable_size: int = 4096  # samples per period of the tone table (interpolation error < -70 dB)


NOISE_SLOPE = {"white": 0.0, "pink": -1.0, "brown": -2.0}  # power, per decade
_HARMONICS = {
    # amplitude of harmonic k (k = 1, 2, ...)
    "sine": lambda k: (k == 1).astype(float),
    "square": lambda k: np.where(k % 2 == 1, 1.0 / k, 0.0),
    "sawtooth": lambda k: 1.0 / k,
    "triangle": lambda k: np.where(k % 2 == 1, (-1.0) ** ((k - 1) // 2) / k**2, 0.0),
}


def _tone(waveform: str, f0: float, n: int, sample_rate: int, phase: float, cfg: SynthConfig) -> np.ndarray:
    """Band-limited periodic tone: one period built additively, read by linear interpolation."""
    k_max = int(min(cfg.max_harmonics, np.floor(0.95 * sample_rate / 2 / f0)))
    k = np.arange(1, max(k_max, 1) + 1, dtype=float)
    amps = _HARMONICS[waveform](k)
    size = cfg.wavetable_size
    grid = 2 * np.pi * np.arange(size + 1) / size  # one extra point closes the period
    table = amps @ np.sin(np.outer(k, grid))
    pos = np.mod(f0 * np.arange(n) / sample_rate + phase / (2 * np.pi), 1.0) * size
    i = pos.astype(np.int64)
    frac = pos - i
    return table[i] * (1.0 - frac) + table[i + 1] * frac


def _noise(colour: str, n: int, sample_rate: int, rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    white = rng.standard_normal(n)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    gain = (np.maximum(freqs, cfg.noise_corner_hz) / cfg.noise_corner_hz) ** (NOISE_SLOPE[colour] / 2)
    gain[freqs < cfg.noise_corner_hz / 2] = 0.0  # no DC / sub-audio drift
    return np.fft.irfft(spectrum * gain, n)


def _ramp(n_ramp: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n_ramp) + 0.5) / n_ramp)


def _gate(n: int, sample_rate: int, rate: float, duty: float, offset: float, cfg: SynthConfig) -> np.ndarray:
    """On/off envelope with raised-cosine edges, vectorised via the distance to edges."""
    t = np.arange(n) / sample_rate
    period = 1.0 / rate
    pos = np.mod(t + offset * period, period)  # time within the current cycle
    on_len = duty * period
    # distance (s) inside the 'on' interval to its nearest edge; negative when off
    dist = np.where(pos < on_len, np.minimum(pos, on_len - pos), -1.0)
    env = np.clip(dist / cfg.ramp_s, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * env)


def render_event(
    event: dict[str, Any], n: int, sample_rate: int, rng: np.random.Generator, cfg: SynthConfig = SynthConfig()
) -> tuple[np.ndarray, dict[str, Any]]:
    """Samples of one event (length ``n``) and its drawn numeric parameters."""
    source = event["source"]
    params: dict[str, Any] = {}
    if source in TONES:
        lo, hi = PITCH_RANGES_HZ[event["pitch"]]
        f0 = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        params["f0_hz"] = round(f0, 2)
        signal = _tone(source, f0, n, sample_rate, rng.uniform(0, 2 * np.pi), cfg)
    elif source in NOISES:
        signal = _noise(source, n, sample_rate, rng, cfg)
    else:
        raise ValueError(f"unknown source {source!r}")
    level = cfg.loud_rms_dbfs if event["loudness"] == "loud" else cfg.quiet_rms_dbfs
    level += rng.uniform(-cfg.level_jitter_db, cfg.level_jitter_db)
    params["rms_dbfs"] = round(float(level), 2)
    rms = np.sqrt(np.mean(signal**2))
    signal = signal * (10 ** (level / 20) / max(rms, 1e-12))
    if event["pattern"] == "beeping":
        rate = rng.uniform(*cfg.beep_rate_hz)
        duty = rng.uniform(*cfg.beep_duty)
        params.update(beep_rate_hz=round(float(rate), 3), beep_duty=round(float(duty), 3))
        signal = signal * _gate(n, sample_rate, rate, duty, rng.uniform(0, 1), cfg)
    n_fade = min(int(cfg.fade_s * sample_rate), n // 2)
    if n_fade > 0:
        fade = _ramp(n_fade)
        signal[:n_fade] *= fade
        signal[-n_fade:] *= fade[::-1]
    return signal, params


def render_clip(
    events: list[dict[str, Any]],
    sample_rate: int,
    duration: float,
    rng: np.random.Generator,
    cfg: SynthConfig = SynthConfig(),
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The float32 clip for ``events`` (one per equal segment) and per-event parameters."""
    total = int(round(duration * sample_rate))
    if total <= 0:
        raise ValueError(f"duration {duration} s at {sample_rate} Hz gives no samples")
    bounds = np.linspace(0, total, len(events) + 1).round().astype(int)
    audio = np.zeros(total, dtype=np.float64)
    all_params = []
    for event, start, stop in zip(events, bounds[:-1], bounds[1:]):
        signal, params = render_event(event, int(stop - start), sample_rate, rng, cfg)
        audio[start:stop] = signal
        all_params.append(params)
    return np.clip(audio, -0.999, 0.999).astype(np.float32), all_params


# ---------------------------------------------------------------------------------------
# Speech (optional, needs the espeak-ng program)
# ---------------------------------------------------------------------------------------
ESPEAK_VOICES = {"man": "en+m3", "woman": "en+f3"}


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def render_speech(
    event: dict[str, Any], sample_rate: int, duration: float, rng: np.random.Generator, cfg: SynthConfig = SynthConfig()
) -> tuple[np.ndarray, list[dict[str, Any]]] | None:
    """A clip of espeak-ng saying ``event['words']``, or None if espeak-ng fails."""
    import soundfile as sf
    from scipy.signal import resample_poly

    total = int(round(duration * sample_rate))
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        cmd = ["espeak-ng", "-v", ESPEAK_VOICES[event["speaker"]], "-s", "150", "-w", str(wav), event["words"]]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=30)
            speech, sr = sf.read(wav, dtype="float64", always_2d=True)
        except (OSError, subprocess.SubprocessError, RuntimeError) as err:
            logger.warning("espeak-ng failed for %r: %s", event["words"], err)
            return None
    speech = speech.mean(axis=1)
    if sr != sample_rate:
        g = np.gcd(int(sr), int(sample_rate))
        speech = resample_poly(speech, sample_rate // g, sr // g)
    speech = speech[:total]
    level = cfg.loud_rms_dbfs + rng.uniform(-cfg.level_jitter_db, cfg.level_jitter_db)
    active = speech[np.abs(speech) > 0.01 * np.abs(speech).max()] if speech.size else speech
    rms = np.sqrt(np.mean(active**2)) if active.size else 0.0
    speech = speech * (10 ** (level / 20) / max(rms, 1e-12))
    audio = np.zeros(total)
    start = int(rng.integers(0, max(total - speech.size, 0) + 1))
    audio[start : start + speech.size] = speech
    params = {"rms_dbfs": round(float(level), 2), "start_s": round(start / sample_rate, 3)}
    return np.clip(audio, -0.999, 0.999).astype(np.float32), [params]
