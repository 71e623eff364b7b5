"""Vocoder benchmark: generator inference real-time factor, training throughput, parameter counts.

* Inference: seconds of compute per second of audio (real-time factor, lower is faster) of the HiFi-GAN
  generator (weight norm removed, eval, no grad) on a log-mel of ``--seconds`` of audio at Auffusion's
  settings. Baseline, measured alternately in the same run on the same mel: Griffin-Lim, 32 iterations
  (the fallback when no vocoder is configured). Reported for the full V1 size and the quickstart size, on
  CPU and, when CUDA is available, on the GPU (float32 and bf16 autocast).
* Training: mel frames per second through ``VocoderModule.training_step`` (one discriminator and one
  generator update per batch, under a real Lightning ``Trainer``) on random segments held in memory.
* Parameter counts of the generator (inference and with weight norm) and the discriminators.

The table is written between the markers of ``--out`` (``benchmarks/results/vocoder.md``), leaving the
rest of that file (the quickstart training measurements) as it is.

    python benchmarks/bench_vocoder.py --threads 2 --seconds 2 --train_steps 4
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from lightning_auffusion.audio import LogMelSpectrogram, MelConfig
from lightning_auffusion.vocoder import (
    DiscriminatorConfig,
    GeneratorConfig,
    GriffinLim,
    GriffinLimConfig,
    HifiGanGenerator,
)
from lightning_auffusion.vocoder.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator

START, END = "<!-- bench_vocoder:start -->", "<!-- bench_vocoder:end -->"
QUICKSTART_GENERATOR = dict(
    resblock="2",
    upsample_rates=[5, 4, 4, 2],
    upsample_kernel_sizes=[11, 8, 8, 4],
    upsample_initial_channel=128,
    resblock_kernel_sizes=[3, 7],
    resblock_dilation_sizes=[[1, 3], [1, 3]],
)
QUICKSTART_DISCRIMINATORS = dict(
    period_channels=[16, 32, 64, 128, 128],
    scale_channels=[16, 32, 64, 128, 128, 128, 128],
    scale_groups=[1, 4, 8, 16, 16, 16, 1],
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_pair(baseline, candidate, repeats: int, device: torch.device) -> tuple[float, float]:
    """Best wall times of two callables run alternately after one warm-up each."""
    best = [float("inf"), float("inf")]
    for fn in (baseline, candidate):
        fn()
    for _ in range(repeats):
        for i, fn in enumerate((baseline, candidate)):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best[i] = min(best[i], time.perf_counter() - t0)
    return best[0], best[1]


def inference_rows(
    name: str, gen_cfg: GeneratorConfig, seconds: float, repeats: int, device: torch.device, autocast: bool
) -> dict:
    mel_cfg = MelConfig()
    torch.manual_seed(0)
    audio = 0.3 * torch.randn(1, int(seconds * mel_cfg.sample_rate), device=device)
    logmel = LogMelSpectrogram(mel_cfg).to(device)(audio)
    generator = HifiGanGenerator(gen_cfg).remove_weight_norm().eval().to(device)
    gl = GriffinLim(mel_cfg, GriffinLimConfig(n_iter=32)).to(device)
    dtype = torch.bfloat16 if autocast else torch.float32

    @torch.no_grad()
    def vocoder():
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            return generator(logmel)

    t_gl, t_voc = timed_pair(lambda: gl(logmel), vocoder, repeats, device)
    return {
        "name": name,
        "device": device.type + (" bf16" if autocast else " fp32"),
        "rtf": t_voc / seconds,
        "gl_rtf": t_gl / seconds,
    }


def training_throughput(
    gen_cfg: dict, disc_cfg: dict, batch: int, steps: int, accelerator: str, precision: str
) -> float:
    """Mel frames per second of full training steps (discriminator + generator update)."""
    import lightning as L
    from torch.utils.data import DataLoader, Dataset

    from lightning_auffusion.vocoder.module import VocoderModule

    segment = 8320

    class Segments(Dataset):
        def __len__(self):
            return batch * (steps + 2)

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"audio": 0.3 * torch.randn(segment, generator=g), "num_samples": torch.tensor(segment)}

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, module, b, i):
            if i == 2:  # two warm-up steps
                _sync(module.device)
                self.t0 = time.perf_counter()

        def on_train_end(self, trainer, module):
            _sync(module.device)
            self.elapsed = time.perf_counter() - self.t0

    module = VocoderModule(generator=gen_cfg, discriminators=disc_cfg, segment_size=segment, val_griffin_lim=None)
    timer = Timer()
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_steps=steps + 2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(module, DataLoader(Segments(), batch_size=batch))
    return steps * batch * (segment // 160) / timer.elapsed


def parameter_rows() -> list[tuple[str, int]]:
    full, quick = GeneratorConfig.v1(), GeneratorConfig(**QUICKSTART_GENERATOR)
    disc = DiscriminatorConfig()
    return [
        ("generator V1 (inference, weight norm removed)", HifiGanGenerator(full).remove_weight_norm().num_parameters()),
        ("generator V1 (training, weight norm g + v)", HifiGanGenerator(full).num_parameters()),
        ("multi-period discriminator (full)", sum(p.numel() for p in MultiPeriodDiscriminator(disc).parameters())),
        ("multi-scale discriminator (full)", sum(p.numel() for p in MultiScaleDiscriminator(disc).parameters())),
        ("generator quickstart (inference)", HifiGanGenerator(quick).remove_weight_norm().num_parameters()),
    ]


def write_section(out: Path, text: str) -> None:
    block = f"{START}\n{text}\n{END}"
    current = out.read_text() if out.is_file() else "# Vocoder measurements\n"
    if START in current and END in current:
        current = current[: current.index(START)] + block + current[current.index(END) + len(END) :]
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="audio length of the inference mel")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train_steps", type=int, default=4, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--train_batch", type=int, default=4, help="CPU training batch (segments of 8320 samples)")
    parser.add_argument("--gpu_train_batch", type=int, default=16)
    parser.add_argument(
        "--skip_full_training", action="store_true", help="skip the (slow on CPU) full-size training run"
    )
    parser.add_argument("--out", default="benchmarks/results/vocoder.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cpu = torch.device("cpu")
    sizes = [("full V1 (13.7 M)", GeneratorConfig.v1()), ("quickstart", GeneratorConfig(**QUICKSTART_GENERATOR))]
    rows = [inference_rows(n, c, args.seconds, args.repeats, cpu, False) for n, c in sizes]
    train = [
        (
            "quickstart G + small D",
            "cpu",
            "32-true",
            args.train_batch,
            training_throughput(
                QUICKSTART_GENERATOR, QUICKSTART_DISCRIMINATORS, args.train_batch, args.train_steps, "cpu", "32-true"
            ),
        )
    ]
    if not args.skip_full_training:
        train.append(
            (
                "full V1 G + full D",
                "cpu",
                "32-true",
                2,
                training_throughput({}, {}, 2, max(1, args.train_steps // 2), "cpu", "32-true"),
            )
        )
    gpu_note = "No GPU was available to this run: GPU rows are missing."
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        rows += [
            inference_rows(n, c, args.seconds * 5, args.repeats, gpu, ac) for n, c in sizes[:1] for ac in (False, True)
        ]
        train.append(
            (
                "full V1 G + full D",
                torch.cuda.get_device_name(0),
                "bf16-mixed",
                args.gpu_train_batch,
                training_throughput({}, {}, args.gpu_train_batch, args.train_steps, "gpu", "bf16-mixed"),
            )
        )
        gpu_note = f"GPU: {torch.cuda.get_device_name(0)}."

    lines = [
        "## Benchmark (`benchmarks/bench_vocoder.py`)",
        "",
        f"torch {torch.__version__}, {args.threads} CPU threads, {platform.machine()}; {gpu_note} "
        f"Load average when done: {os.getloadavg()[0]:.1f} (a shared machine makes absolute numbers noisy).",
        "",
        f"Inference: log-mel of {args.seconds:g} s (GPU rows: {args.seconds * 5:g} s) at 16 kHz / 256 mels / hop 160, best of "
        f"{args.repeats} alternating runs after a warm-up. Real-time factor = compute seconds per audio second (< 1: faster "
        "than real time). Baseline: Griffin-Lim, 32 iterations, same mel, same run.",
        "",
        "| generator | device | RTF vocoder | RTF Griffin-Lim (32 it) | vocoder time / Griffin-Lim time |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['name']} | {r['device']} | {r['rtf']:.3f} | {r['gl_rtf']:.3f} | {r['rtf'] / r['gl_rtf']:.2f}x |"
        for r in rows
    ]
    lines += [
        "",
        "Training throughput (one discriminator + one generator update per batch, segments of 8320 samples = 52 frames):",
        "",
        "| model | device | precision | batch | mel frames / s |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {d} | {p} | {b} | {fps:.0f} |" for n, d, p, b, fps in train]
    lines += ["", "| parameters | count |", "|---|---|"]
    lines += [f"| {n} | {c:,} |" for n, c in parameter_rows()]
    text = "\n".join(lines)
    print(text)
    write_section(Path(args.out), text)


if __name__ == "__main__":
    main()
