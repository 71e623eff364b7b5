"""Peak memory (RSS) of one U-Net training step: full fine-tune vs LoRA vs the low-memory optimisers, on the CPU.

Every mode trains the same U-Net (SD-1.5 size by default, random weights built from config through the
project's ``build_unet`` / ``prepare_unet`` / ``add_lora``) for one step at batch 1, fp32, latent 4 x 32 x 128
(10.24 s) with a 77 x 768 text condition: forward, MSE against noise, backward, optimiser step. The frozen
VAE and text encoder are the same in every mode and left out, so the ratios are the U-Net's own.

* ``full``: every U-Net parameter trains with AdamW (the Auffusion recipe; the baseline of the ratios);
* ``lora``: ``add_lora`` (rank 4, attention projections), AdamW on the adapters only;
* ``adafactor``: full fine-tune with ``transformers.optimization.Adafactor`` (factored second moment, no first);
* ``adafactor_ckpt``: adafactor + gradient checkpointing (``conf/ldm/presets/low_memory.yaml`` less bf16);
* ``adamw8bit``: full fine-tune with bitsandbytes' 8-bit AdamW, only where bitsandbytes runs on this machine.

Each mode runs in a fresh subprocess (one after the other), so each peak RSS is that mode's alone.

    python benchmarks/bench_memory.py                       # SD-1.5 size, all modes
    python benchmarks/bench_memory.py --size tiny           # smoke test (seconds)
    python benchmarks/bench_memory.py --channels_scale 0.5  # half the channels (a smaller but still large U-Net)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout's package, not an installed one
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
MODES = ("full", "lora", "adafactor", "adafactor_ckpt", "adamw8bit")


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def unet_config(size: str, channels_scale: float) -> dict:
    from lightning_auffusion.diffusion.unet_factory import sd15_unet_config

    if size == "tiny":
        return sd15_unet_config(
            block_out_channels=[32, 64, 64, 64], attention_head_dim=4, norm_num_groups=8, cross_attention_dim=768
        )
    channels = [int(round(c * channels_scale / 32)) * 32 for c in (320, 640, 1280, 1280)]
    return sd15_unet_config(block_out_channels=channels)


def worker(mode: str, size: str, channels_scale: float, threads: int) -> dict:
    import torch

    from lightning_auffusion.diffusion.lora import LoRAConfig, add_lora
    from lightning_auffusion.diffusion.unet_factory import build_unet, count_parameters, prepare_unet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    unet = prepare_unet(
        build_unet(unet_config(size, channels_scale)),
        attention="sdpa",
        gradient_checkpointing=(mode == "adafactor_ckpt"),
    )
    if mode == "lora":
        add_lora(unet, LoRAConfig(rank=4))
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    if mode in ("full", "lora"):
        optimizer = torch.optim.AdamW(params, lr=3e-5, weight_decay=1e-2)
    elif mode.startswith("adafactor"):
        from transformers.optimization import Adafactor

        optimizer = Adafactor(
            params, lr=3e-5, scale_parameter=False, relative_step=False, warmup_init=False, weight_decay=1e-2
        )
    else:
        from lightning_auffusion.diffusion.low_memory import AdamW8bit

        optimizer = AdamW8bit(params, lr=3e-5, weight_decay=1e-2)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 32, 128, generator=g)
    cond = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    noise = torch.randn(latents.shape, generator=g)
    built = rss_gib()
    start = time.perf_counter()
    pred = unet(latents + noise, torch.tensor([500]), encoder_hidden_states=cond).sample
    loss = torch.nn.functional.mse_loss(pred, noise)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    return {
        "mode": mode,
        "params": count_parameters(unet),
        "trainable": count_parameters(unet, trainable_only=True),
        "rss_after_build_gib": built,
        "peak_rss_gib": rss_gib(),
        "step_s": seconds,
        "loss": float(loss),
    }


def bitsandbytes_runs_on_cpu() -> str | None:
    """None when bitsandbytes' 8-bit AdamW steps a CPU tensor, else why not."""
    code = (
        "import torch, bitsandbytes as bnb; p = torch.nn.Parameter(torch.randn(4096)); p.grad = torch.randn(4096); "
        "bnb.optim.AdamW8bit([p], lr=1e-3).step()"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if run.returncode == 0:
        return None
    lines = [line for line in (run.stderr or run.stdout).strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {run.returncode}"


def machine() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        pass
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=["full", "tiny"], default="full")
    parser.add_argument(
        "--channels_scale", type=float, default=1.0, help="scale SD-1.5's block_out_channels (0.5: half)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.size, args.channels_scale, args.threads)))
        return
    import torch

    results, skipped = [], {}
    info = machine() | {"torch": torch.__version__, "load_before": os.getloadavg()}
    for mode in args.modes:
        if mode == "adamw8bit":
            reason = bitsandbytes_runs_on_cpu()
            if reason is not None:
                skipped[mode] = reason
                print(f"skip adamw8bit: {reason}", flush=True)
                continue
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            mode,
            "--size",
            args.size,
            "--channels_scale",
            str(args.channels_scale),
            "--threads",
            str(args.threads),
        ]
        run = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        )
        if run.returncode != 0:
            skipped[mode] = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
            print(f"{mode} failed: {skipped[mode]}", flush=True)
            continue
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    info["load_after"] = os.getloadavg()
    base = next((r for r in results if r["mode"] == "full"), None)
    print(f"\nmachine: {json.dumps(info)}\n")
    print("| mode | trainable params | step (s) | RSS after build (GiB) | peak RSS (GiB) | peak vs full |")
    print("|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['peak_rss_gib'] / base['peak_rss_gib']:.2f}x" if base else "-"
        print(
            f"| {r['mode']} | {r['trainable']:,} of {r['params']:,} | {r['step_s']:.1f} | {r['rss_after_build_gib']:.2f} | "
            f"{r['peak_rss_gib']:.2f} | {ratio} |"
        )
    for mode, reason in skipped.items():
        print(f"| {mode} | not measured: {reason} | | | | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "results": results, "skipped": skipped, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
