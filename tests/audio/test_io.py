import numpy as np
import pytest
import soundfile as sf

from lightning_auffusion.audio import AudioLoadError, load_audio, save_wav


def _tone(sr, seconds=1.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "PCM_U8"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_formats_load_as_float_mono(tmp_path, fmt, subtype):
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(str(path), _tone(16000), 16000, format=fmt, subtype=subtype)
    audio, sr = load_audio(path)
    assert sr == 16000 and audio.dtype == np.float32 and audio.ndim == 1
    assert abs(np.abs(audio).max() - 0.5) < 0.05


def test_stereo_48k_is_downmixed_and_resampled(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(str(path), _tone(48000, channels=2), 48000)
    audio, sr = load_audio(path, target_sr=16000)
    assert sr == 16000 and audio.shape == (16000,)
    both, _ = load_audio(path, mono=False)
    assert both.shape == (2, 48000)


def test_max_seconds_reads_only_the_start(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(str(path), _tone(16000, seconds=3.0), 16000)
    audio, _ = load_audio(path, max_seconds=1.5)
    assert audio.shape == (24000,)


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(AudioLoadError, match="file not found"):
        load_audio(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    with pytest.raises(AudioLoadError, match="not a readable audio file"):
        load_audio(text)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0), 16000)
    with pytest.raises(AudioLoadError, match="no audio samples"):
        load_audio(empty)
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.full(1000, np.nan), 16000, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match="NaN"):
        load_audio(nan)


def test_save_wav_clips_and_round_trips(tmp_path):
    path = tmp_path / "out" / "y.wav"
    save_wav(path, np.array([0.0, 0.5, 2.0, -3.0, np.nan], dtype=np.float32), 16000)
    audio, sr = load_audio(path)
    assert sr == 16000
    np.testing.assert_allclose(audio, [0.0, 0.5, 1.0, -1.0, 0.0], atol=1e-4)
    assert sf.info(str(path)).subtype == "PCM_16"
