"""Every metric accumulated on 2 gloo ranks (uneven shares, one rank without reference clips) equals one process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

N_GEN, N_REF, CLASSES = 23, 17, 527


def fixed_data():
    rng = np.random.default_rng(0)
    return {
        "emb_gen": np.maximum(rng.normal(size=(N_GEN, 64)), 0).astype(np.float32),
        "emb_ref": np.maximum(rng.normal(0.3, 1, size=(N_REF, 64)), 0).astype(np.float32),
        "frames_gen": rng.normal(size=(3 * N_GEN, 128)).astype(np.float32),
        "frames_ref": rng.normal(0.2, 1, size=(3 * N_REF, 128)).astype(np.float32),
        "logits_gen": rng.normal(0, 3, size=(N_GEN, CLASSES)).astype(np.float32),
        "logits_ref": rng.normal(0, 3, size=(N_REF, CLASSES)).astype(np.float32),
        "audio_emb": rng.normal(size=(N_GEN, 16)).astype(np.float32),
        "text_emb": rng.normal(size=(N_GEN, 16)).astype(np.float32),
        "peaks": rng.uniform(0, 1, size=N_GEN).astype(np.float32),
        "ids_gen": [f"clip{i:03d}" for i in range(N_GEN)],
        "ids_ref": [f"clip{i:03d}" for i in range(N_REF)],
    }


def peak_scorer(audio, sample_rate, caption):
    return {"event0.loudness": float(np.abs(audio).max()) > 0.5}


def compute_all(gen: slice, ref: slice | None) -> dict:
    """Feed the given shares of the fixed data to fresh metrics and compute (syncs when a group exists)."""
    from lightning_auffusion.metrics import (
        AlignmentAccuracy,
        ClapScore,
        FrechetAudioDistance,
        FrechetDistance,
        InceptionScore,
        KLDivergence,
    )

    d = fixed_data()
    t = {k: torch.from_numpy(v) for k, v in d.items() if isinstance(v, np.ndarray)}
    fd, fad, kl, is_ = FrechetDistance(64), FrechetAudioDistance(), KLDivergence(), InceptionScore()
    clap, align = ClapScore(), AlignmentAccuracy(scorer=peak_scorer)
    fd.update(t["emb_gen"][gen], real=False)
    fad.update(t["frames_gen"].reshape(N_GEN, 3, 128)[gen].reshape(-1, 128), real=False)
    kl.update(t["logits_gen"][gen], d["ids_gen"][gen], real=False)
    is_.update(t["logits_gen"][gen], d["ids_gen"][gen])
    clap.update(t["audio_emb"][gen], t["text_emb"][gen])
    align.update([np.full(100, p, np.float32) for p in d["peaks"][gen]], ["c"] * len(d["peaks"][gen]), 16000)
    if ref is not None:
        fd.update(t["emb_ref"][ref], real=True)
        fad.update(t["frames_ref"].reshape(N_REF, 3, 128)[ref].reshape(-1, 128), real=True)
        kl.update(t["logits_ref"][ref], d["ids_ref"][ref], real=True)
    is_mean, is_std = is_.compute()
    return {
        "fd": float(fd.compute()),
        "fad": float(fad.compute()),
        "kl": float(kl.compute()),
        "kl_pairs": kl.last_pairing.pairs,
        "is_mean": float(is_mean),
        "is_std": float(is_std),
        "clap": float(clap.compute()),
        "align": float(align.compute()["accuracy"]),
    }


def worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        gen = slice(0, 15) if rank == 0 else slice(15, N_GEN)  # uneven shares
        ref = slice(0, N_REF) if rank == 1 else None  # rank 0 holds no reference clip at all
        result = compute_all(gen, ref)
        if rank == 0:
            torch.save(result, out_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(240)
def test_ddp_two_gloo_ranks_equal_one_process(tmp_path):
    out_file = tmp_path / "ddp.pt"
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    ddp = torch.load(out_file)
    single = compute_all(slice(0, N_GEN), slice(0, N_REF))
    assert ddp["kl_pairs"] == single["kl_pairs"] == N_REF
    for key, value in single.items():
        assert ddp[key] == pytest.approx(value, rel=1e-7, abs=1e-12), key  # float64 summation order only
