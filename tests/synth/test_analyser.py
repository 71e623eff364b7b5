"""The analyser accepts synthetic clips for their captions and rejects contradicting ones."""

import copy
import functools
import importlib.util

import numpy as np
import pytest
from scipy.signal import resample_poly

from lightning_auffusion.synth.analyser import analyse, score_caption
from lightning_auffusion.synth.attributes import (
    LOUDNESSES,
    NOISES,
    PATTERNS,
    PITCHES,
    SOURCES,
    TONES,
    render_captions,
)
from lightning_auffusion.synth.generator import render_clip

SR = 16000
DURATION = 6.0


@functools.lru_cache(maxsize=1)
def _coverage_clips():
    """Clips of three events covering every (source, pitch, pattern) triple at least once."""
    triples = [(s, p, pat) for s in TONES for p in PITCHES for pat in PATTERNS]
    triples += [(s, None, pat) for s in NOISES for pat in PATTERNS]
    rng = np.random.default_rng(11)
    order = rng.permutation(len(triples))
    events = []
    for n, j in enumerate(order):
        source, pitch, pattern = triples[j]
        event = {"source": source}
        if pitch:
            event["pitch"] = pitch
        event.update(pattern=pattern, loudness=LOUDNESSES[n % 2])
        events.append(event)
    clips = []
    for c in range(0, len(events), 3):
        clip_events = events[c : c + 3]
        audio, _ = render_clip(clip_events, SR, DURATION, rng)
        audio = np.round(audio * 32767) / 32767  # as written to a 16-bit WAV
        clips.append((audio, clip_events, render_captions(clip_events, rng, 5)))
    return tuple(clips)


N_CLIPS = 10  # 30 triples, three events per clip


class _Clips:
    """Lazy view of the coverage clips, built on first use rather than at collection."""

    def __getitem__(self, k):
        return _coverage_clips()[k]

    def __iter__(self):
        return iter(_coverage_clips())


CLIPS = _Clips()


def _alternatives(event, attr):
    if attr == "source":
        return [s for s in SOURCES if s != event["source"]]
    values = {"pitch": PITCHES, "pattern": PATTERNS, "loudness": LOUDNESSES}[attr]
    return [v for v in values if v != event[attr]]


def _flip(events, i, attr, value):
    flipped = copy.deepcopy(events)
    flipped[i][attr] = value
    if attr == "source" and value in NOISES:
        flipped[i].pop("pitch", None)
    if attr == "source" and value in TONES and "pitch" not in flipped[i]:
        flipped[i]["pitch"] = "medium"
    return flipped


@pytest.mark.parametrize("k", range(N_CLIPS))
def test_clip_passes_all_its_captions(k):
    audio, events, captions = CLIPS[k]
    verdicts = analyse(audio, SR, events)
    assert len(verdicts) == sum(len(e) for e in events)
    assert all(verdicts.values()), verdicts
    for caption in captions:
        scores = score_caption(audio, SR, caption)
        assert scores == verdicts, caption


@pytest.mark.parametrize("k", range(N_CLIPS))
def test_contradicting_attribute_is_rejected(k):
    audio, events, _ = CLIPS[k]
    for i, event in enumerate(events):
        for attr in ("source", "pitch", "pattern", "loudness"):
            if attr not in event:
                continue
            for value in _alternatives(event, attr):
                verdicts = analyse(audio, SR, _flip(events, i, attr, value))
                assert verdicts[f"event{i}.{attr}"] is False, (events, i, attr, value)


def test_resampled_clip_still_passes():
    for audio, events, _ in CLIPS[:4]:
        resampled = resample_poly(audio, 441, 320)  # 16 kHz -> 22.05 kHz
        verdicts = analyse(resampled, 22050, events)
        assert all(verdicts.values()), verdicts


def test_mild_noise_and_gain_still_pass():
    rng = np.random.default_rng(0)
    for audio, events, _ in CLIPS[:4]:
        noisy = audio * 10 ** (1 / 20) + 10 ** (-60 / 20) * rng.standard_normal(audio.size)
        assert all(analyse(noisy, SR, events).values())


def test_relative_loudness_survives_peak_normalisation():
    audio, events, _ = next(c for c in CLIPS if {e["loudness"] for e in c[1]} == {"loud", "quiet"})
    normalised = audio * (0.95 / np.abs(audio).max())
    verdicts = analyse(normalised, SR, events, loudness="relative")
    assert all(verdicts.values()), verdicts
    swapped = [dict(e, loudness="quiet" if e["loudness"] == "loud" else "loud") for e in events]
    swapped_verdicts = analyse(normalised, SR, swapped, loudness="relative")
    assert not any(v for k, v in swapped_verdicts.items() if k.endswith("loudness"))
    single = [dict(events[0])]  # one event: nothing to compare against, not judged
    assert "event0.loudness" not in analyse(normalised, SR, single, loudness="relative")


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(SR * 3),
        np.full(SR * 3, np.nan),
        np.full(SR * 3, np.inf),
        np.zeros(0),
        np.zeros(10),
        1e-6 * np.random.default_rng(0).standard_normal(SR * 3),
    ],
    ids=["silent", "nan", "inf", "empty", "tiny", "near-silent"],
)
def test_degenerate_audio_gives_false_without_crash(audio):
    events = CLIPS[0][1]
    verdicts = analyse(audio, SR, events)
    assert len(verdicts) == sum(len(e) for e in events)
    assert not any(verdicts.values())


def test_partial_nan_gives_false():
    audio, events, _ = CLIPS[0]
    broken = audio.copy()
    broken[100] = np.nan
    assert not any(analyse(broken, SR, events).values())


def test_inputs_other_than_1d_numpy():
    torch = pytest.importorskip("torch")
    audio, events, _ = CLIPS[1]
    assert all(analyse(torch.from_numpy(audio).float(), SR, events).values())
    assert all(analyse(np.stack([audio, audio]), SR, events).values())  # (channels, samples)
    assert all(analyse(np.stack([audio, audio], axis=1), SR, events).values())  # (samples, channels)


def test_unparseable_caption_scores_empty_and_unknown_keys_ignored():
    audio, events, _ = CLIPS[0]
    assert score_caption(audio, SR, "birds singing") == {}
    extra = [dict(e, colour_temperature="warm") for e in events]
    assert set(analyse(audio, SR, extra)) == set(analyse(audio, SR, events))
    with pytest.raises(ValueError):
        analyse(audio, SR, events, loudness="perceptual")


def _griffin_lim_roundtrip(audio):
    """Peak-normalise, log-mel with the project's front end, invert (NNLS + Griffin-Lim)."""
    import torch

    from lightning_auffusion.audio.mel import LogMelSpectrogram, MelConfig, peak_normalize

    cfg = MelConfig()
    mel = LogMelSpectrogram(cfg)
    wav = peak_normalize(torch.from_numpy(audio).float()[None])[0]
    target = mel(wav).exp()
    basis = mel.mel_basis.float()
    mag = basis.T @ target / (basis.T @ basis.sum(1, keepdim=True) + 1e-9)
    for _ in range(30):  # multiplicative non-negative least squares
        mag = mag * (basis.T @ target) / (basis.T @ (basis @ mag) + 1e-12)
    window = torch.hann_window(cfg.win_length)
    args = dict(n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=window, center=True)
    angle = torch.exp(2j * torch.pi * torch.rand(mag.shape, generator=torch.Generator().manual_seed(0)))
    for _ in range(8):
        wav = torch.istft(mag * angle, length=audio.size, **args)
        spec = torch.stft(wav, return_complex=True, **args)[:, : mag.shape[1]]
        angle = spec / (spec.abs() + 1e-9)
    return torch.istft(mag * angle, length=audio.size, **args).numpy()


@pytest.mark.skipif(
    importlib.util.find_spec("lightning_auffusion.audio.mel") is None,
    reason="lightning_auffusion.audio.mel not available",
)
def test_mel_roundtrip_clip_still_passes():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small transforms: one thread is fastest on a shared machine
    try:
        for audio, events, _ in CLIPS[:2]:
            restored = _griffin_lim_roundtrip(audio)
            verdicts = analyse(restored, SR, events, loudness="relative")
            assert verdicts and all(verdicts.values()), verdicts
    finally:
        torch.set_num_threads(threads)
