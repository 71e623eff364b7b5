"""Judge whether audio matches the attributes of a synthetic caption.

``analyse(audio, sample_rate, events)`` cuts the audio into ``len(events)`` equal segments
(event ``i`` on segment ``i``, a small margin trimmed at the borders), measures features in
Hz and seconds (so any sample rate works) and returns one verdict per judged attribute,
keyed ``"event{i}.{attribute}"``. Judged attributes: ``source``, ``pitch``, ``pattern``,
``loudness``; other keys of an event dict (e.g. a speech event's ``words``) are ignored.

Features (all computed on the averaged power spectrum of the segment's active frames or on
its frame-level envelope):

- tone vs noise: fraction of band energy (80 Hz - 7.6 kHz) in prominent spectral peaks;
- waveform: levels of harmonics 2..8 (below 7.6 kHz) relative to the fundamental, matched to
  the templates sine (none), square (odd, 1/k), sawtooth (all, 1/k), triangle (odd, 1/k^2);
- pitch: fundamental frequency range;
- noise colour: log-log slope of the power spectrum (white 0, pink -1, brown -2 per decade);
- pattern: fraction of envelope frames far below the 'on' level (beeping gates the sound);
- loudness: 'on' level (90th percentile of 20 ms frame RMS) in dBFS against a threshold, or,
  with ``loudness="relative"``, against the loudest event of the clip (for audio that was
  peak-normalised, where only relative levels survive).

Silent, empty or non-finite audio gives False for every attribute (no exception).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import median_filter

from .attributes import NOISES, PITCH_RANGES_HZ, SPEECH, TONES, parse_caption

logger = logging.getLogger(__name__)

JUDGED = ("source", "pitch", "pattern", "loudness")


@dataclass(frozen=True)
class AnalyserConfig:
    """Thresholds of the analyser; defaults sit between the generator's settings."""

    margin_s: float = 0.15  # trimmed at both borders of each segment (at most 10 % of it)
    envelope_frame_s: float = 0.02
    fft_s: float = 0.064  # STFT window; hop is a quarter of it
    band_hz: tuple[float, float] = (80.0, 7600.0)  # analysed band (mel edge is 8 kHz)
    silence_dbfs: float = -65.0  # 'on' level below this: nothing to judge, all False
    loud_threshold_dbfs: float = -24.0  # between loud (-14) and quiet (-34) RMS
    relative_gap_db: float = 10.0  # relative mode: quiet = this far below the loudest event
    on_range_db: float = 30.0  # frames this close to the loudest define the 'on' level
    active_range_db: float = 20.0  # frames within this of the 'on' level are active
    peak_prominence_db: float = 10.0  # a spectral peak stands this far above its surroundings
    median_window_hz: float = 600.0
    tonal_fraction: float = 0.5  # energy fraction in peaks above which a sound is a tone
    beep_gap_db: float = 20.0  # an 'off' frame is this far below the 'on' level
    beep_off_fraction: float = 0.15  # beeping when more than this fraction of frames are off
    slope_band_hz: tuple[float, float] = (100.0, 6000.0)
    white_pink_slope: float = -0.5
    pink_brown_slope: float = -1.5
    min_f0_hz: float = 70.0
    max_f0_hz: float = 4000.0
    n_harmonics: int = 8
    harmonic_floor_db: float = -40.0
    speech_voiced_fraction: float = 0.2
    speech_f0_spread_semitones: float = 2.0


def _pitch_edges() -> list[tuple[str, float, float]]:
    """Pitch classes with edges at the geometric means between the generator's ranges."""
    names = list(PITCH_RANGES_HZ)
    edges = []
    for i, name in enumerate(names):
        lo = np.sqrt(PITCH_RANGES_HZ[names[i - 1]][1] * PITCH_RANGES_HZ[name][0]) if i else -np.inf
        hi = np.sqrt(PITCH_RANGES_HZ[name][1] * PITCH_RANGES_HZ[names[i + 1]][0]) if i + 1 < len(names) else np.inf
        edges.append((name, lo, hi))
    return edges


def pitch_class(f0: float, cfg: AnalyserConfig = AnalyserConfig()) -> str | None:
    if not np.isfinite(f0) or f0 < cfg.min_f0_hz or f0 > cfg.max_f0_hz:
        return None
    for name, lo, hi in _pitch_edges():
        if lo <= f0 < hi:
            return name
    return None


def _harmonic_templates(n: int, floor_db: float) -> dict[str, np.ndarray]:
    k = np.arange(2, n + 1, dtype=float)
    odd = k % 2 == 1
    with np.errstate(divide="ignore"):
        templates = {
            "sine": np.full(k.shape, -np.inf),
            "square": np.where(odd, -20 * np.log10(k), -np.inf),
            "sawtooth": -20 * np.log10(k),
            "triangle": np.where(odd, -40 * np.log10(k), -np.inf),
        }
    return {name: np.maximum(t, floor_db) for name, t in templates.items()}


def _frames(x: np.ndarray, n: int, hop: int) -> np.ndarray:
    if x.size < n:
        x = np.pad(x, (0, n - x.size))
    count = 1 + (x.size - n) // hop
    idx = np.arange(n)[None, :] + hop * np.arange(count)[:, None]
    return x[idx]


def _db(power: np.ndarray | float) -> np.ndarray:
    return 10 * np.log10(np.maximum(power, 1e-20))


def segment_features(
    x: np.ndarray, sample_rate: int, cfg: AnalyserConfig = AnalyserConfig(), voicing: bool = True
) -> dict[str, Any]:
    """Features of one segment; ``{"valid": False}`` when silent, empty or non-finite.

    ``voicing=False`` skips the (speech-only) periodicity features.
    """
    sr = float(sample_rate)
    n_env = max(int(round(cfg.envelope_frame_s * sr)), 1)
    if x.size < 4 * n_env or not np.all(np.isfinite(x)):
        return {"valid": False}
    env_db = _db(np.mean(_frames(x, n_env, n_env) ** 2, axis=1))
    # 'on' level: 90th percentile of the frames within on_range_db of the loudest ones, so
    # that sparse sounds (a short phrase in a long segment) are measured while they sound
    loudest = np.percentile(env_db, 99)
    level = float(np.percentile(env_db[env_db >= loudest - cfg.on_range_db], 90))
    if level < cfg.silence_dbfs:
        return {"valid": False, "level_dbfs": level}
    feats: dict[str, Any] = {"valid": True, "level_dbfs": level}
    feats["off_fraction"] = float(np.mean(env_db < level - cfg.beep_gap_db))

    # averaged power spectrum of the active STFT frames
    n_fft = max(int(round(cfg.fft_s * sr)), 16)
    frames = _frames(x, n_fft, max(n_fft // 4, 1)) * np.hanning(n_fft)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    frame_db = _db(spec.sum(axis=1))
    active = frame_db >= np.percentile(frame_db, 90) - cfg.active_range_db
    power = spec[active].mean(axis=0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    df = freqs[1]
    band = (freqs >= cfg.band_hz[0]) & (freqs <= min(cfg.band_hz[1], 0.47 * sr))
    if band.sum() < 8 or power[band].sum() <= 0:
        return {"valid": False, "level_dbfs": level}
    bp, bf = power[band], freqs[band]
    bdb = _db(bp)
    win = max(int(round(cfg.median_window_hz / df)) | 1, 3)
    prominence = bdb - median_filter(bdb, size=win, mode="nearest")
    local_max = np.r_[False, (bdb[1:-1] >= bdb[:-2]) & (bdb[1:-1] >= bdb[2:]), False]
    peaks = np.flatnonzero(local_max & (prominence > cfg.peak_prominence_db))
    in_peak = np.zeros(bp.size, bool)
    for offset in range(-3, 4):
        in_peak[np.clip(peaks + offset, 0, bp.size - 1)] = True
    feats["tonal_fraction"] = float(bp[in_peak].sum() / bp.sum()) if peaks.size else 0.0

    # fundamental and harmonic pattern
    feats["f0_hz"] = float("nan")
    feats["waveform"] = None
    if peaks.size:
        best = peaks[np.argmax(bp[peaks])]
        f_best = _refine(bdb, best, bf, df)
        f0 = f_best
        for k in (4, 3, 2):  # a weaker peak at f_best / k makes f_best a harmonic
            cand = peaks[np.abs(bf[peaks] - f_best / k) <= max(2 * df, 0.03 * f_best / k)]
            if cand.size and bdb[cand].max() >= bdb[best] - 30 and f_best / k >= cfg.min_f0_hz:
                f0 = _refine(bdb, cand[np.argmax(bdb[cand])], bf, df)
                break
        feats["f0_hz"] = float(f0)
        feats["waveform"], feats["harmonics_db"] = _waveform(power, freqs, f0, sr, cfg)

    # noise colour: slope of log power over log-spaced bands
    top = min(cfg.slope_band_hz[1], 0.4 * sr)
    edges = np.geomspace(cfg.slope_band_hz[0], top, 25)
    centres, levels = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (freqs >= lo) & (freqs < hi)
        if sel.any():
            centres.append(np.sqrt(lo * hi))
            levels.append(np.log10(max(power[sel].mean(), 1e-30)))
    feats["slope"] = float(np.polyfit(np.log10(centres), levels, 1)[0]) if len(centres) >= 4 else float("nan")

    if voicing:
        feats.update(_voicing(x, sr, level, cfg))
    return feats


def _refine(bdb: np.ndarray, i: int, bf: np.ndarray, df: float) -> float:
    """Parabolic interpolation of a spectral peak's frequency."""
    if 0 < i < bdb.size - 1:
        a, b, c = bdb[i - 1], bdb[i], bdb[i + 1]
        denom = a - 2 * b + c
        if denom < 0:
            return float(bf[i] + 0.5 * (a - c) / denom * df)
    return float(bf[i])


def _waveform(
    power: np.ndarray, freqs: np.ndarray, f0: float, sr: float, cfg: AnalyserConfig
) -> tuple[str | None, list[float]]:
    df = freqs[1]
    top = min(cfg.band_hz[1], 0.47 * sr)

    def peak_power(f: float) -> float:
        """Power of the main lobe (+-2 bins) of the strongest bin near ``f``."""
        sel = np.flatnonzero(np.abs(freqs - f) <= max(2.5 * df, 0.02 * f))
        if not sel.size:
            return 0.0
        centre = sel[np.argmax(power[sel])]
        return float(power[max(centre - 2, 0) : centre + 3].sum())

    p1 = peak_power(f0)
    ks = [k for k in range(2, cfg.n_harmonics + 1) if k * f0 <= top]
    if not ks or p1 <= 0:
        return None, []
    rel = np.maximum(_db(np.array([peak_power(k * f0) for k in ks])) - _db(p1), cfg.harmonic_floor_db)
    rel = np.minimum(rel, 0.0)
    templates = _harmonic_templates(cfg.n_harmonics, cfg.harmonic_floor_db)
    idx = np.array(ks) - 2
    dist = {name: float(np.mean(np.abs(rel - t[idx]))) for name, t in templates.items()}
    return min(dist, key=dist.get), [round(float(r), 1) for r in rel]


def _voicing(x: np.ndarray, sr: float, level: float, cfg: AnalyserConfig) -> dict[str, float]:
    """Fraction of active 40 ms frames that are periodic at 70-400 Hz, and their f0 spread."""
    n = max(int(round(0.04 * sr)), 8)
    frames = _frames(x, n, max(n // 2, 1))
    e = np.mean(frames**2, axis=1)
    active = _db(e) >= level - cfg.active_range_db
    frames = frames[active]
    if not frames.size:
        return {"voiced_fraction": 0.0, "f0_spread_semitones": 0.0}
    frames = frames - frames.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(frames, 2 * n, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :n]
    ac = ac / np.maximum(ac[:, :1], 1e-20)
    lo, hi = int(sr / 400), min(int(sr / cfg.min_f0_hz), n - 1)
    window = ac[:, lo:hi]
    # the first lag that reaches 90 % of the best one, so that tones whose period is
    # shorter than the lag window give their period's multiple consistently
    first = np.argmax(window >= 0.9 * window.max(axis=1, keepdims=True), axis=1)
    lag = lo + first
    strength = ac[np.arange(ac.shape[0]), lag]
    voiced = strength > 0.6
    f0 = sr / lag[voiced]
    spread = 12 * np.log2(np.percentile(f0, 90) / np.percentile(f0, 10)) if f0.size > 4 else 0.0
    return {"voiced_fraction": float(voiced.mean()), "f0_spread_semitones": float(spread)}


def _mono(audio: Any) -> np.ndarray:
    x = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float64)
    if x.ndim == 2:  # (channels, samples) or (samples, channels): mix the short axis down
        x = x.mean(axis=0 if x.shape[0] <= x.shape[1] else 1)
    return x.reshape(-1)


def _judge(attr: str, value: Any, feats: dict[str, Any], cfg: AnalyserConfig) -> bool:
    tonal = feats["tonal_fraction"] >= cfg.tonal_fraction
    if attr == "source":
        if value in TONES:
            return bool(tonal and feats["waveform"] == value)
        if value in NOISES:
            slope = feats["slope"]
            if tonal or not np.isfinite(slope):
                return False
            colour = "white" if slope > cfg.white_pink_slope else "pink" if slope > cfg.pink_brown_slope else "brown"
            return colour == value
        if value == SPEECH:
            return bool(
                feats["voiced_fraction"] >= cfg.speech_voiced_fraction
                and feats["f0_spread_semitones"] >= cfg.speech_f0_spread_semitones
            )
        return False
    if attr == "pitch":
        return bool(tonal and pitch_class(feats["f0_hz"], cfg) == value)
    if attr == "pattern":
        beeping = feats["off_fraction"] > cfg.beep_off_fraction
        return (value == "beeping" and beeping) or (value == "continuous" and not beeping)
    if attr == "loudness":
        loud = feats["level_dbfs"] >= cfg.loud_threshold_dbfs
        return (value == "loud" and loud) or (value == "quiet" and not loud)
    return False


def analyse(
    audio: Any,
    sample_rate: int,
    events: list[dict[str, Any]],
    loudness: str = "absolute",
    cfg: AnalyserConfig = AnalyserConfig(),
) -> dict[str, bool]:
    """Per-attribute verdicts ``{"event{i}.{attr}": bool}`` for ``events`` on ``audio``.

    Args:
        audio: mono waveform (numpy array or tensor, float, full scale 1.0); 2-D input is
            mixed down along its shorter axis.
        sample_rate: sample rate of ``audio`` in Hz (any; features are computed in Hz).
        events: event attribute dicts (as in the manifests or from ``parse_caption``);
            only the attributes present are judged.
        loudness: ``"absolute"`` judges each event's level against
            ``cfg.loud_threshold_dbfs``; ``"relative"`` judges loudness only in clips whose
            events claim both loud and quiet, an event being quiet when it is
            ``cfg.relative_gap_db`` below the loudest one (for peak-normalised audio).
        cfg: thresholds.
    """
    if loudness not in ("absolute", "relative"):
        raise ValueError(f"loudness must be 'absolute' or 'relative', got {loudness!r}")
    keys = [(i, attr) for i, event in enumerate(events) for attr in JUDGED if attr in event]
    claims = {e.get("loudness") for e in events if "loudness" in e}
    relative = loudness == "relative"
    if relative and claims != {"loud", "quiet"}:  # nothing to compare against: not judged
        keys = [(i, attr) for i, attr in keys if attr != "loudness"]
    verdicts = {f"event{i}.{attr}": False for i, attr in keys}
    if not events:
        return verdicts
    try:
        x = _mono(audio)
    except (TypeError, ValueError) as err:
        logger.warning("analyse: unusable audio (%s); all attributes False", err)
        return verdicts
    if x.size == 0 or not np.all(np.isfinite(x)) or not sample_rate or sample_rate <= 0:
        return verdicts
    bounds = np.linspace(0, x.size, len(events) + 1).round().astype(int)
    feats = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        margin = int(min(cfg.margin_s * sample_rate, 0.1 * (stop - start)))
        speech = events[len(feats)].get("source") == SPEECH
        feats.append(segment_features(x[start + margin : stop - margin], int(sample_rate), cfg, voicing=speech))
    valid_levels = [f["level_dbfs"] for f in feats if f["valid"]]
    for i, attr in keys:
        if not feats[i]["valid"]:
            continue
        value = events[i][attr]
        if attr == "loudness" and relative:
            quiet = feats[i]["level_dbfs"] < max(valid_levels) - cfg.relative_gap_db
            verdicts[f"event{i}.{attr}"] = (value == "quiet") == quiet
            continue
        verdicts[f"event{i}.{attr}"] = _judge(attr, value, feats[i], cfg)
    return verdicts


def score_caption(
    audio: Any, sample_rate: int, caption: str, loudness: str = "absolute", cfg: AnalyserConfig = AnalyserConfig()
) -> dict[str, bool]:
    """``analyse`` on the parsed ``caption``; ``{}`` when the caption does not parse."""
    events = parse_caption(caption)
    if events is None:
        return {}
    return analyse(audio, sample_rate, events, loudness=loudness, cfg=cfg)
