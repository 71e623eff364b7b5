"""Training from latent shards (``encode``) against training from audio shards, at SD-1.5 size on the CPU.

Two measurements, each against a baseline measured in the same run:

* **step**: one ``AuffusionLDM`` training step (SD-1.5-size U-Net, SD-1.5 VAE, CLIP ViT-L/14-size text encoder,
  random weights from config, saved once so every path loads the same ones) on a batch of 10 s clips:
  ``audio`` streams ``AudioShardDataModule`` batches (front end + VAE encode + text encoder every step, as
  ``conf/ldm/auffusion.yaml`` trains: no in-memory cache) and ``latents`` streams ``LatentShardDataModule``
  batches of the same clips encoded beforehand with ``--text_embeddings`` (no VAE, no text encoder). The step
  time includes drawing the batch. Each path runs in its own subprocess (peak RSS is that path's alone).
* **memory**: what the data side holds per rank. The in-memory latent cache (``cache_latents``) keeps every
  clip's float32 posterior: measured as the RSS growth of a ``LatentCache`` filled with ``--cache_clips``
  entries of (8, 32, 128), extrapolated linearly to ``--dataset_clips`` (AudioCaps: 45k). Streaming latent
  shards holds a shuffle buffer whatever the dataset size: measured as the RSS growth while a
  ``LatentShardDataModule`` (shuffle_buffer 1000, batch 20) iterates over synthetic latent shards.

    python benchmarks/bench_latent_shards.py --threads 1                  # CPU, full size (~16 GiB, minutes)
    python benchmarks/bench_latent_shards.py --size tiny --steps 1        # smoke test
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout's package, not an installed one
if ROOT not in sys.path:
    sys.path.insert(1, ROOT)
from bench_ldm_training import clip_tokenizer_dir, model_configs, optimise  # noqa: E402

SECONDS = 10.0
WINDOW = 10.24


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def prepare(work: Path, size: str, clips: int) -> dict:
    """Audio shards of ``clips`` 10 s clips, the model weights saved once, and the clips encoded to latent shards."""
    import numpy as np
    import soundfile as sf
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    from lightning_auffusion.data.shards import shard
    from lightning_auffusion.diffusion.encode import encode

    unet_cfg, vae_cfg, text_cfg = model_configs(size)
    torch.manual_seed(0)
    AutoencoderKL.from_config(vae_cfg).save_pretrained(work / "vae")
    CLIPTextModel(CLIPTextConfig(**text_cfg)).save_pretrained(work / "clip")
    audio = work / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(clips):
        t = np.arange(int(SECONDS * 16000)) / 16000
        sf.write(
            audio / f"clip{i}.wav",
            (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(t.shape)).astype("float32"),
            16000,
        )
        rows.append(json.dumps({"file": f"clip{i}.wav", "caption": f"a dog barks while rain falls number {i}"}))
    (work / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    shard(str(audio), str(work / "manifest.jsonl"), "audio", out_root=str(work), workers=0, progress=False)
    spec = {"name": "clip", "kind": "clip", "pretrained": str(work / "clip"), "tokenizer": clip_tokenizer_dir()}
    started = time.perf_counter()
    encode(
        str(work / "audio"),
        "latents",
        out_root=str(work),
        vae=str(work / "vae"),
        encoders=[spec],
        text_embeddings=True,
        batch_size=1,
        device="cpu",
        progress=False,
    )
    return {"unet": unet_cfg, "spec": spec, "encode_s_per_clip": (time.perf_counter() - started) / clips}


def step_worker(args) -> dict:
    import torch

    from lightning_auffusion.data.datamodule import AudioShardDataModule
    from lightning_auffusion.data.latents import LatentShardDataModule
    from lightning_auffusion.diffusion.module import AuffusionLDM

    work = Path(args.work)
    setup = json.loads((work / "setup.json").read_text())
    model = AuffusionLDM(unet=setup["unet"], vae=str(work / "vae"), encoders=[setup["spec"]]).train()
    optimizer = model.configure_optimizers()
    kind = LatentShardDataModule if args.mode == "latents" else AudioShardDataModule
    data = kind(
        train_shards=str(work / args.mode),
        batch_size=args.batch_size,
        num_workers=0,
        shuffle_buffer=0,
        batches_per_epoch=args.warmup + args.steps,
        segment_seconds=WINDOW,
    )
    batches = iter(data.train_dataloader())

    for _ in range(args.warmup):
        optimise(model.diffusion_loss(next(batches)), optimizer)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = optimise(model.diffusion_loss(next(batches)), optimizer)
        times.append(time.perf_counter() - start)
    return {
        "mode": args.mode,
        "step_times_s": times,
        "mean_step_s": sum(times) / len(times),
        "final_loss": float(loss),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "device": f"cpu x{torch.get_num_threads()} threads",
    }


def write_synthetic_latent_shards(root: Path, clips: int, per_shard: int = 500) -> None:
    """Latent shards in ``encode``'s layout with random float16 posteriors of 10.24 s clips (8, 32, 128)."""
    import numpy as np
    import webdataset as wds

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    shards = []
    for s in range(-(-clips // per_shard)):
        name = f"syn-{s:06d}.tar"
        with wds.TarWriter(str(root / name), encoder=False) as sink:
            for i in range(s * per_shard, min(clips, (s + 1) * per_shard)):
                buffer = io.BytesIO()
                np.save(buffer, rng.standard_normal((8, 32, 128)).astype(np.float16))
                sink.write(
                    {
                        "__key__": f"c{i:06d}",
                        "posterior.npy": buffer.getvalue(),
                        "json": json.dumps({"captions": [f"caption {i}"], "latent_fingerprint": "x"}).encode(),
                    }
                )
        shards.append({"shard": s, "file": name, "count": min(per_shard, clips - s * per_shard), "bytes": 0})
    (root / "index.json").write_text(
        json.dumps(
            {
                "format": "latent-shards-1",
                "sample_rate": 16000,
                "hop_length": 160,
                "latent_downsampling": 8,
                "shards": shards,
            }
        )
    )


def memory_worker(args) -> dict:
    import torch

    if args.mode == "cache":
        from lightning_auffusion.diffusion.latent_cache import LatentCache

        cache = LatentCache()
        before = rss_mib()
        for i in range(args.cache_clips):
            cache.store(f"clip{i:06d}", torch.zeros(2, dtype=torch.float64), torch.randn(8, 32, 128))
        grown = rss_mib() - before
        return {
            "mode": "cache",
            "clips": args.cache_clips,
            "rss_growth_mib": grown,
            "mib_per_clip": grown / args.cache_clips,
            "tensor_mib_per_clip": 8 * 32 * 128 * 4 / 2**20,
        }
    from lightning_auffusion.data.latents import LatentShardDataModule

    data = LatentShardDataModule(
        train_shards=str(Path(args.work) / "synthetic"),
        batch_size=20,
        num_workers=0,
        shuffle_buffer=1000,
        shuffle_initial=1000,
        batches_per_epoch=args.stream_batches,
        segment_seconds=WINDOW,
    )
    loader = data.train_dataloader()
    before, peak = rss_mib(), 0.0
    for batch in loader:
        peak = max(peak, rss_mib() - before)
        del batch
    return {"mode": "stream", "batches": args.stream_batches, "rss_growth_mib": peak}


def run(args, mode: str, kind: str) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        kind,
        "--mode",
        mode,
        "--work",
        args.work,
        "--batch_size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--cache_clips",
        str(args.cache_clips),
        "--stream_batches",
        str(args.stream_batches),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"{kind} worker {mode} failed:\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="full", choices=["full", "tiny"])
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per path")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    parser.add_argument("--cache_clips", type=int, default=2000, help="entries put in the in-memory cache")
    parser.add_argument(
        "--dataset_clips", type=int, default=45000, help="clips the cache is extrapolated to (AudioCaps)"
    )
    parser.add_argument("--stream_clips", type=int, default=3000, help="clips of the synthetic latent shards streamed")
    parser.add_argument("--stream_batches", type=int, default=100)
    parser.add_argument("--out", default="benchmarks/results/latent_shards.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.worker:
        result = (step_worker if args.worker == "step" else memory_worker)(args)
        print("RESULT " + json.dumps(result), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench_latents_") as work:
        args.work = work
        started = time.perf_counter()
        setup = prepare(Path(work), args.size, args.batch_size * (args.warmup + args.steps))
        (Path(work) / "setup.json").write_text(json.dumps(setup))
        write_synthetic_latent_shards(Path(work) / "synthetic", args.stream_clips)
        memory = [run(args, "cache", "memory"), run(args, "stream", "memory")]
        steps = [run(args, "audio", "step"), run(args, "latents", "step")]
        total = time.perf_counter() - started
    cache, stream = memory
    cache_gib = cache["mib_per_clip"] * args.dataset_clips / 1024
    audio, latents = steps
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.1f} at the end",
        "size": args.size,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "steps": args.steps,
        "encode_s_per_clip": setup["encode_s_per_clip"],
        "step": steps,
        "memory": memory,
        "step_speedup_latents_vs_audio": audio["mean_step_s"] / latents["mean_step_s"],
        "cache_gib_for_dataset": cache_gib,
        "dataset_clips": args.dataset_clips,
        "memory_ratio_cache_vs_stream": cache["mib_per_clip"]
        * args.dataset_clips
        / max(stream["rss_growth_mib"], 1e-9),
        "total_s": total,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
