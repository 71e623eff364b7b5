"""Training throughput and peak memory of ``AuffusionLDM`` against a plain diffusers-style training step.

Both paths train the same U-Net (SD-1.5 size by default, random weights built from config) on the same
batch of 10 s clips, with the same SD-1.5 VAE and a CLIP ViT-L/14-size text encoder:

* ``baseline``: what a plain diffusers text-to-image training script does: every step encodes the
  spectrogram images with the VAE and the captions with the text encoder, then one U-Net step under
  autocast (default SDPA attention, no caching, no channels_last, no compile).
* ``ours``: ``AuffusionLDM.diffusion_loss`` with ``cache_latents`` (each un-cropped clip's VAE posterior
  computed once, a fresh sample drawn from it every step) and ``cache_text_embeddings``; the warm-up
  steps fill the caches, as the first epoch does in real training.
* ``ours_fast``: ``ours`` plus ``channels_last`` and ``torch.compile`` of the U-Net (GPU mode).

Each path runs in its own subprocess, so peak memory (CUDA max allocated, or the CPU process's peak RSS)
is that path's alone. On a GPU it reports samples/s at batch 20 in bf16 and model-FLOP utilisation with
2.03 TFLOP per training sample (3 x the 0.68 TFLOP U-Net forward at latent 4 x 32 x 128).

    python benchmarks/bench_ldm_training.py                       # CPU: batch 1, 2 timed steps
    python benchmarks/bench_ldm_training.py --device cuda         # GPU: batch 20, bf16, MFU
    python benchmarks/bench_ldm_training.py --size tiny --steps 2 # smoke test (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import string
import subprocess
import sys
import tempfile
import time

TRAIN_FLOP_PER_SAMPLE = 2.03e12
PEAK_BF16_TFLOPS = {  # dense bf16 tensor-core peaks
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "A6000": 154.8,
    "L40S": 362.0,
    "L4": 121.0,
    "4090": 165.2,
}


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key.lower() in name.lower():
            return value
    return None


def clip_tokenizer_dir() -> str:
    """A CLIP BPE tokenizer over characters, written locally (no download; ids stay in CLIP-L's vocabulary)."""
    from transformers import CLIPTokenizer

    letters = list(string.ascii_lowercase + string.digits)
    vocab: dict[str, int] = {}
    for token in letters + [c + "</w>" for c in letters] + ["<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(token, len(vocab))
    path = tempfile.mkdtemp(prefix="bench_clip_tok_")
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(path)
    return path


def model_configs(size: str) -> tuple[dict, dict, dict]:
    from lightning_auffusion.diffusion.unet_factory import sd15_unet_config, sd15_vae_config

    if size == "full":
        text = dict(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            bos_token_id=72,
            eos_token_id=73,
            pad_token_id=73,
        )
        return sd15_unet_config(), sd15_vae_config(), text
    unet = sd15_unet_config(
        block_out_channels=[32, 64, 64, 64], attention_head_dim=4, norm_num_groups=8, cross_attention_dim=64
    )
    vae = sd15_vae_config(block_out_channels=[8, 16, 32, 32], layers_per_block=1, norm_num_groups=8)
    text = dict(
        vocab_size=80,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=72,
        eos_token_id=73,
        pad_token_id=73,
    )
    return unet, vae, text


def optimise(loss, optimizer):
    """Backward, optimiser step, gradients cleared; returns ``loss``."""
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def make_batch(batch_size: int, device):
    import torch

    g = torch.Generator().manual_seed(0)
    seconds, window = 10.0, 163840  # 10 s clips in a 10.24 s window: zero-padded, so cacheable
    audio = torch.zeros(batch_size, window)
    audio[:, : int(seconds * 16000)] = 0.1 * torch.randn(batch_size, int(seconds * 16000), generator=g)
    captions = [f"a dog barks while rain falls number {i}" for i in range(batch_size)]
    return {
        "audio": audio.to(device),
        "num_samples": torch.full((batch_size,), int(seconds * 16000), dtype=torch.long),
        "caption": captions,
        "captions": [[c] for c in captions],
        "key": [f"clip{i}" for i in range(batch_size)],
    }


def worker(args) -> dict:
    import torch

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    use_autocast = args.precision == "bf16"
    unet_cfg, vae_cfg, text_cfg = model_configs(args.size)
    torch.manual_seed(0)
    tok = clip_tokenizer_dir()
    batch = make_batch(args.batch_size, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    if args.mode == "baseline":
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        from lightning_auffusion.audio import AuffusionFrontend
        from lightning_auffusion.diffusion.schedulers import sd15_noise_config

        unet = UNet2DConditionModel.from_config(unet_cfg).to(device).train()
        vae = AutoencoderKL.from_config(vae_cfg).to(device).eval().requires_grad_(False)
        text = CLIPTextModel(CLIPTextConfig(**text_cfg)).to(device).eval().requires_grad_(False)
        tokenizer = CLIPTokenizer.from_pretrained(tok)
        frontend = AuffusionFrontend().to(device)
        noise_scheduler = DDPMScheduler.from_config(sd15_noise_config())
        optimizer = torch.optim.AdamW(unet.parameters(), lr=3e-5)
        scale = 0.18215

        def step():
            with torch.autocast(device.type, dtype=dtype, enabled=use_autocast):
                with torch.no_grad():
                    with torch.autocast(device.type, enabled=False):
                        images = frontend(batch["audio"])
                    latents = vae.encode(images).latent_dist.sample() * scale
                    ids = tokenizer(
                        batch["caption"], padding="max_length", max_length=77, truncation=True, return_tensors="pt"
                    )
                    cond = text(ids.input_ids.to(device)).last_hidden_state
                noise = torch.randn_like(latents)
                t = torch.randint(0, 1000, (latents.shape[0],), device=device)
                pred = unet(noise_scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=cond).sample
                loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
            return optimise(loss, optimizer)
    else:
        from lightning_auffusion.diffusion.encoders import EncoderSpec
        from lightning_auffusion.diffusion.module import AuffusionLDM

        fast = args.mode == "ours_fast"
        model = AuffusionLDM(
            unet=unet_cfg,
            vae=vae_cfg,
            encoders=[EncoderSpec(name="clip", kind="clip", config=text_cfg, tokenizer=tok)],
            cache_latents=True,
            cache_text_embeddings=True,
            channels_last=fast,
            compile=fast and device.type == "cuda",
            gradient_checkpointing=args.gradient_checkpointing,
        ).to(device)
        model.train()
        optimizer = model.configure_optimizers()

        def step():
            with torch.autocast(device.type, dtype=dtype, enabled=use_autocast):
                loss = model.diffusion_loss(batch)
            return optimise(loss, optimizer)

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - start)
    result = {
        "mode": args.mode,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()} threads",
        "size": args.size,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "step_times_s": times,
        "mean_step_s": sum(times) / len(times),
        "samples_per_s": args.batch_size / (sum(times) / len(times)),
        "final_loss": float(loss),
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def markdown(results: list[dict], args) -> str:
    base = next((r for r in results if r["mode"] == "baseline"), None)
    mem_key = "peak_memory_gib" if "peak_memory_gib" in results[0] else "peak_rss_gib"
    lines = [
        (
            f"device: {results[0]['device']}; U-Net size: {args.size}; batch {args.batch_size}; "
            f"precision {args.precision}; {args.warmup} warm-up + {args.steps} timed steps"
        ),
        "",
        f"| path | step times (s) | mean step (s) | samples/s | speed-up vs baseline | {mem_key.replace('_', ' ')} | MFU |",
        "|---|---|---|---|---|---|---|",
    ]
    peak = args.peak_tflops or peak_tflops(results[0]["device"]) if args.device.startswith("cuda") else None
    for r in results:
        ratio = base["mean_step_s"] / r["mean_step_s"] if base else float("nan")
        mfu = (
            f"{100 * r['samples_per_s'] * TRAIN_FLOP_PER_SAMPLE / (peak * 1e12):.1f}%"
            if peak and args.size == "full"
            else "n/a"
        )
        steps = ", ".join(f"{t:.2f}" for t in r["step_times_s"])
        lines.append(
            f"| {r['mode']} | {steps} | {r['mean_step_s']:.3f} | {r['samples_per_s']:.3f} | {ratio:.2f}x | {r[mem_key]:.2f} | {mfu} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--size", default="full", choices=["full", "tiny"])
    parser.add_argument("--batch_size", type=int, default=None, help="default: 20 on GPU, 1 on CPU")
    parser.add_argument("--precision", default=None, choices=["bf16", "fp32"], help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on GPU, 2 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 5 on GPU, 1 on CPU)")
    parser.add_argument("--modes", default=None, help="comma list of baseline, ours, ours_fast")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--peak_tflops", type=float, default=None, help="bf16 peak for MFU if the GPU is not known")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per worker (default: torch's)")
    parser.add_argument("--out", default="benchmarks/results/ldm_training.json")
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)  # worker subprocess
    args = parser.parse_args()

    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = args.device.startswith("cuda")
    args.batch_size = args.batch_size or (20 if gpu else 1)
    args.precision = args.precision or ("bf16" if gpu else "fp32")
    args.steps = args.steps or (20 if gpu else 2)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    if args.mode:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return
    if not gpu and args.size == "full":
        import psutil

        need = 18 + 4 * (args.batch_size - 1)  # GiB: fp32 U-Net + grads + AdamW states + activations
        free = psutil.virtual_memory().available / 2**30
        if free < need:
            raise SystemExit(
                f"a full-size CPU training step needs about {need} GiB of free memory, {free:.1f} GiB is available; "
                "free memory, or run --size tiny"
            )
    modes = (args.modes or ("baseline,ours,ours_fast" if gpu else "baseline,ours")).split(",")
    results = []
    for mode in modes:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--mode",
            mode,
            "--device",
            args.device,
            "--size",
            args.size,
            "--batch_size",
            str(args.batch_size),
            "--precision",
            args.precision,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
        ]
        if args.gradient_checkpointing:
            cmd.append("--gradient_checkpointing")
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
            raise SystemExit(f"benchmark worker {mode!r} failed (exit {proc.returncode})")
        result = json.loads(line[len("RESULT ") :])
        result["wall_s_including_build"] = time.time() - t0
        results.append(result)
        print(f"{mode}: mean step {result['mean_step_s']:.3f} s ({result['samples_per_s']:.3f} samples/s)", flush=True)
    table = markdown(results, args)
    print(table)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"args": vars(args), "results": results, "table": table}, fh, indent=2)


if __name__ == "__main__":
    main()
