"""Data benchmark: clips/s for FLAC decode + crop + log-mel + image, read from shards, on one core.

Ours: ``AudioShardDataModule`` (WebDataset pipeline: shard read, windowed FLAC decode, random crop,
batching) feeding the batched torch ``AuffusionFrontend``. Baseline, measured in the same run on the
same shards: tar read + whole-file ``soundfile`` decode + numpy crop + ``librosa.stft`` and a librosa
Slaney mel filterbank with the same formula (reflect pad 944, ``center=False``, Hann 1024 in 2048,
``sqrt(|X|^2 + 1e-9)``, ``ln(max(mel, 1e-5))``), then the same min-max image mapping in numpy, one clip
at a time. Both run single-threaded (per core); rounds alternate and the median is reported.

    python benchmarks/bench_data.py [--clips 64] [--seconds 10] [--rounds 3] [--out benchmarks/results/data.md]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # per-core numbers: every library on one thread

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from lightning_auffusion.audio import AuffusionFrontend, ImageConfig, MelConfig  # noqa: E402
from lightning_auffusion.data.datamodule import AudioShardDataModule  # noqa: E402
from lightning_auffusion.data.shards import shard  # noqa: E402


def make_clips(folder: Path, clips: int, seconds: float, sr: int) -> Path:
    """Deterministic test sounds (tones + noise bursts) and a JSONL manifest."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    rows = []
    for i in range(clips):
        f0 = rng.uniform(100, 3000)
        env = (np.sin(2 * np.pi * rng.uniform(0.2, 3) * t) > 0).astype(np.float32)
        wave = 0.3 * np.sin(2 * np.pi * f0 * t) * env + 0.05 * rng.standard_normal(t.shape[0])
        sf.write(folder / f"clip{i:04d}.wav", wave.astype(np.float32), sr)
        rows.append({"file": f"clip{i:04d}.wav", "captions": [f"a tone at {f0:.0f} Hz with noise"]})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return manifest


class Clock:
    """Wall time and this process's CPU time; with one thread, clips per CPU-second is the per-core rate
    and stays meaningful when other jobs share the machine."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_ours(
    shards: list[str],
    clips: int,
    batch_size: int,
    segment_seconds: float,
    frontend: AuffusionFrontend,
    frontend_batch: int,
) -> tuple[float, float]:
    dm = AudioShardDataModule(
        train_shards=shards,
        batch_size=batch_size,
        num_workers=0,
        segment_seconds=segment_seconds,
        batches_per_epoch=clips // batch_size,
        shuffle_buffer=batch_size,
        shuffle_initial=batch_size,
        seed=0,
    )
    loader = dm.train_dataloader()
    done = 0
    with Clock() as clock, torch.inference_mode():
        for batch in loader:
            for chunk in batch["audio"].split(frontend_batch):
                done += frontend(chunk).shape[0]
    return done / clock.cpu, done / clock.wall


class LibrosaBaseline:
    """The released front end's formula written the straightforward way: librosa + numpy per clip."""

    def __init__(self, mel: MelConfig, image: ImageConfig, n_frames: int) -> None:
        import librosa

        self.librosa = librosa
        self.mel = mel
        self.basis = librosa.filters.mel(
            sr=mel.sample_rate,
            n_fft=mel.n_fft,
            n_mels=mel.n_mels,
            fmin=mel.f_min,
            fmax=mel.f_max,
            htk=False,
            norm="slaney",
        ).astype(np.float32)
        self.image = image
        self.n_frames = n_frames

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        m = self.mel
        top = np.abs(wave).max()
        wave = wave * (m.peak_level / top) if top > 1e-8 else wave
        padded = np.pad(wave, (m.padding, m.padding), mode="reflect")
        spec = self.librosa.stft(
            padded, n_fft=m.n_fft, hop_length=m.hop_length, win_length=m.win_length, window="hann", center=False
        )
        mag = np.sqrt(spec.real**2 + spec.imag**2 + m.magnitude_eps)
        logmel = np.log(np.maximum(self.basis @ mag, m.clip_val))
        frames = logmel.shape[1]
        if frames < self.n_frames:
            logmel = np.pad(logmel, ((0, 0), (0, self.n_frames - frames)), constant_values=np.log(m.clip_val))
        unit = np.clip((logmel[:, : self.n_frames] - self.image.lo) / (self.image.hi - self.image.lo), 0.0, 1.0)[::-1]
        return np.repeat((unit * 2.0 - 1.0)[None], 3, axis=0)


def baseline_samples(shards: list[str]):
    for path in shards:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.name.endswith(".flac"):
                    yield tar.extractfile(member).read()


def run_baseline(shards: list[str], segment: int, baseline: LibrosaBaseline) -> tuple[float, float]:
    rng = random.Random(0)
    done = 0
    with Clock() as clock:
        for data in baseline_samples(shards):
            wave, _ = sf.read(io.BytesIO(data), dtype="float32")
            if wave.shape[0] > segment:
                offset = rng.randint(0, wave.shape[0] - segment)
                wave = wave[offset : offset + segment]
            else:
                wave = np.pad(wave, (0, segment - wave.shape[0]))
            baseline(wave)
            done += 1
    return done / clock.cpu, done / clock.wall


def check_same_formula(
    shards: list[str], frontend: AuffusionFrontend, baseline: LibrosaBaseline, segment: int
) -> float:
    data = next(baseline_samples(shards))
    wave, _ = sf.read(io.BytesIO(data), dtype="float32")
    wave = np.pad(wave, (0, max(0, segment - wave.shape[0])))[:segment]
    with torch.inference_mode():
        ours = frontend(torch.from_numpy(wave)[None])[0].numpy()
    return float(np.abs(ours - baseline(wave)).max())


def measure(
    seconds: float, args: argparse.Namespace, frontend: AuffusionFrontend, baseline: LibrosaBaseline, mel: MelConfig
) -> dict:
    """Shard ``args.clips`` test clips of ``seconds`` and time both pipelines in alternating rounds."""
    segment = int(round(args.segment_seconds * mel.sample_rate))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "audio").mkdir()
        manifest = make_clips(tmp / "audio", args.clips, seconds, mel.sample_rate)
        shard(
            str(tmp / "audio"), str(manifest), "bench", out_root=str(tmp), clips_per_shard=16, workers=0, progress=False
        )
        shards = sorted(str(p) for p in (tmp / "bench").glob("*.tar"))
        error = check_same_formula(shards, frontend, baseline, segment)
        run_ours(
            shards, args.batch_size, args.batch_size, args.segment_seconds, frontend, args.frontend_batch
        )  # warm-up
        run_baseline(shards[:1], segment, baseline)
        ours, base = [], []
        for _ in range(args.rounds):
            ours.append(
                run_ours(shards, args.clips, args.batch_size, args.segment_seconds, frontend, args.frontend_batch)
            )
            base.append(run_baseline(shards, segment, baseline))
            print(
                f"{seconds:g} s clips: ours {ours[-1][0]:.2f} clips/cpu-s ({ours[-1][1]:.2f}/s wall), "
                f"baseline {base[-1][0]:.2f} clips/cpu-s ({base[-1][1]:.2f}/s wall)",
                file=sys.stderr,
            )
    return {"seconds": seconds, "ours": ours, "base": base, "error": error}


def table(result: dict, args: argparse.Namespace) -> list[str]:
    ours, base = result["ours"], result["base"]

    def med(rows, i):
        return statistics.median(r[i] for r in rows)

    cpu_ratio, wall_ratio = med(ours, 0) / med(base, 0), med(ours, 1) / med(base, 1)
    return [
        f"### {args.clips} clips of {result['seconds']:g} s",
        "",
        "| | clips per CPU-second (median) | clips/s wall (median) | per round (CPU) |",
        "|---|---|---|---|",
        f"| ours: AudioShardDataModule (batch {args.batch_size}) + torch AuffusionFrontend "
        f"({args.frontend_batch} clip(s) per call) "
        f"| {med(ours, 0):.2f} | {med(ours, 1):.2f} | " + ", ".join(f"{r[0]:.2f}" for r in ours) + " |",
        "| baseline: tarfile + soundfile + librosa STFT / mel + numpy, per clip "
        f"| {med(base, 0):.2f} | {med(base, 1):.2f} | " + ", ".join(f"{r[0]:.2f}" for r in base) + " |",
        f"| **ratio ours / baseline** | **{cpu_ratio:.2f}x** | {wall_ratio:.2f}x | "
        + ", ".join(f"{o[0] / b[0]:.2f}x" for o, b in zip(ours, base))
        + " |",
        "",
        f"Same formula: max |image difference| ours vs baseline on one clip = {result['error']:.2e} (image range [-1, 1]).",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument(
        "--seconds", type=float, nargs="+", default=[10.0], help="length(s) of the test clips; one table per length"
    )
    parser.add_argument("--segment_seconds", type=float, default=10.24, help="crop length (Auffusion: 10.24 s)")
    parser.add_argument("--batch_size", type=int, default=16, help="data module batch size")
    parser.add_argument(
        "--frontend_batch",
        type=int,
        default=1,
        help="clips per front-end call on CPU (large CPU batches thrash the cache)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None, help="write a markdown report here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mel, image = MelConfig(), ImageConfig()
    frontend = AuffusionFrontend(
        mel, image, n_frames=int(round(args.segment_seconds * mel.sample_rate)) // mel.hop_length
    )
    baseline = LibrosaBaseline(mel, image, frontend.n_frames)
    results = [measure(seconds, args, frontend, baseline, mel) for seconds in args.seconds]

    import librosa

    lines = [
        "# Data benchmark: shards -> FLAC decode -> crop -> log-mel -> image, one core",
        "",
        "`python benchmarks/bench_data.py " + " ".join(sys.argv[1:]) + "`",
        "",
        "Target: >= 1.5x the baseline per core. Everything runs on one thread (torch.set_num_threads(1), "
        "OMP/MKL/OpenBLAS = 1), so clips per CPU-second is the per-core rate; it is the headline because other "
        "jobs share the machine and stretch wall time. Rounds alternate ours / baseline; medians are reported.",
        "",
    ]
    for result in results:
        lines += table(result, args)
    lines += [
        f"Settings: test clips are tones + noise, 16 kHz FLAC PCM_16, 16 clips per shard; random crop "
        f"{args.segment_seconds} s -> image (3, {mel.n_mels}, {frontend.n_frames}); n_fft {mel.n_fft}, "
        f"win {mel.win_length}, hop {mel.hop_length}, {mel.n_mels} Slaney mels 0-{mel.f_max:.0f} Hz, float32; "
        f"{args.rounds} rounds after a warm-up. Ours decodes only the crop window of a longer clip; the baseline "
        "decodes the whole file, as `soundfile.read` / `librosa.load` do.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores visible (shared), Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {np.__version__}, librosa {librosa.__version__}.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
