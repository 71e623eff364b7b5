"""Feature extraction throughput (clips/s) of Cnn14, VGGish and CLAP on CPU, batched path vs a per-clip loop.

Full-size architectures with random weights (throughput does not depend on the weights) on 10 s clips at
16 kHz. The baseline, measured in the same run on the same clips, is the toolbox's way: one clip per
forward pass. Results go to ``benchmarks/results/feature_extraction.md``.

    python benchmarks/bench_feature_extraction.py --clips 8 --batch_size 8 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch


def timed_pair(baseline, candidate, repeats: int) -> tuple[float, float]:
    """Best wall times of two callables measured alternately (after one warm-up each), so a change in
    machine load affects both alike."""
    baseline()
    candidate()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for slot, fn in enumerate((baseline, candidate)):
            start = time.perf_counter()
            fn()
            best[slot] = min(best[slot], time.perf_counter() - start)
    return best[0], best[1]


def bench_cnn14(raw: list[np.ndarray], args) -> tuple[str, float, float]:
    from lightning_auffusion.metrics.extractors.cnn14 import Cnn14, Cnn14Extractor, prepare_cnn14_audio

    model = Cnn14().eval()
    clips = [prepare_cnn14_audio(x, 16000) for x in raw]
    batched, single = Cnn14Extractor(model, batch_size=args.batch_size), Cnn14Extractor(model, batch_size=1)
    return "Cnn14 (FD/KL/IS)", *timed_pair(lambda: single(clips), lambda: batched(clips), args.repeats)


def bench_vggish(raw: list[np.ndarray], args) -> tuple[str, float, float]:
    from lightning_auffusion.metrics.extractors.vggish import VGGish, VGGishExtractor, prepare_vggish_audio

    extractor = VGGishExtractor(VGGish().eval(), batch_size=10 * args.batch_size)
    clips = [prepare_vggish_audio(x, 16000) for x in raw]

    def per_clip() -> None:
        for clip in clips:
            extractor([clip])

    return "VGGish (FAD)", *timed_pair(per_clip, lambda: extractor(clips), args.repeats)


def bench_clap(raw: list[np.ndarray], args) -> tuple[str, float, float]:
    from transformers import ClapConfig, ClapModel

    from lightning_auffusion.metrics.extractors.clap import (
        ClapEmbedder,
        default_feature_extractor,
        offline_tokenizer,
        prepare_clap_audio,
    )

    model, tokenizer, features = ClapModel(ClapConfig()).eval(), offline_tokenizer(), default_feature_extractor()
    batched = ClapEmbedder(model, tokenizer, features, batch_size=args.batch_size)
    single = ClapEmbedder(model, tokenizer, features, batch_size=1)
    clips = [prepare_clap_audio(x, 16000) for x in raw]
    timings = timed_pair(lambda: single.audio_embeddings(clips), lambda: batched.audio_embeddings(clips), args.repeats)
    return "CLAP audio (48 kHz, 480000 samples)", *timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "feature_extraction.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    raw = [rng.normal(0, 0.1, 160000).astype(np.float32) for _ in range(args.clips)]
    n = len(raw)
    rows = [bench_cnn14(raw, args), bench_vggish(raw, args), bench_clap(raw, args)]

    lines = [
        "# Feature extraction throughput (CPU)",
        "",
        f"{n} clips of 10 s, random weights at full size, torch {torch.__version__}, {args.threads} threads, "
        f"batch {args.batch_size}, {platform.processor() or platform.machine()}; "
        f"best of {args.repeats} alternating runs after a warm-up.",
        "Baseline: the same extractor, one clip per forward pass (as the evaluation toolbox runs).",
        f"Load average when done: {os.getloadavg()[0]:.1f} (a shared machine makes absolute numbers noisy).",
        "",
        "| extractor | per-clip loop (clips/s) | batched (clips/s) | speed-up |",
        "|---|---|---|---|",
    ]
    for name, t_single, t_batched in rows:
        lines.append(f"| {name} | {n / t_single:.2f} | {n / t_batched:.2f} | {t_single / t_batched:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
