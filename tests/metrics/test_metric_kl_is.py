"""KL and IS against independent numpy computations of the toolbox's definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_auffusion.metrics import InceptionScore, KLDivergence, UnpairedClipsError
from lightning_auffusion.metrics.ids import decode_ids, encode_ids


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_kl(ref_logits: np.ndarray, gen_logits: np.ndarray, eps: float = 1e-6) -> float:
    """mean_i sum_c p log(p / (q + eps)), p = softmax(ref), q = softmax(gen), 0 log 0 = 0."""
    p = np_softmax(ref_logits.astype(np.float64))
    q = np_softmax(gen_logits.astype(np.float64)) + eps
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return float(terms.sum(axis=1).mean())


def np_inception_score(logits: np.ndarray, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    x = logits.astype(np.float64)[np.random.RandomState(seed).permutation(len(logits))]
    p = np_softmax(x)
    n = len(p)
    scores = []
    for k in range(splits):
        part = p[k * n // splits : (k + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        scores.append(np.exp((part * (np.log(part) - np.log(marginal))).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))  # population std (ddof 0)


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    return rng.normal(0, 3, size=(12, 527)).astype(np.float32), rng.normal(0, 3, size=(12, 527)).astype(np.float32)


def test_ids_round_trip():
    ids = ["a", "clip_0001", "Ünïcode name", "x" * 255]
    assert decode_ids(encode_ids(ids)) == ids
    with pytest.raises(ValueError):
        encode_ids(["y" * 256])


def test_kl_pairs_by_id_whatever_the_order(logits):
    gen, ref = logits
    ids = [f"clip{i:02d}" for i in range(12)]
    order = np.random.default_rng(1).permutation(12)
    metric = KLDivergence()
    metric.update(torch.from_numpy(gen[:5]), ids[:5], real=False)
    metric.update(torch.from_numpy(gen[5:]), ids[5:], real=False)
    metric.update(torch.from_numpy(ref[order]), [ids[i] for i in order], real=True)
    assert float(metric.compute()) == pytest.approx(np_kl(ref, gen), rel=1e-6)
    assert metric.last_pairing.pairs == 12
    assert float(metric.compute()) > 0


def test_kl_direction_and_epsilon():
    """KL(ref || gen): a generated class with zero probability is bounded by eps, not infinite."""
    ref = torch.tensor([[10.0, 10.0, -40.0]])
    gen = torch.tensor([[10.0, -200.0, -200.0]])
    metric = KLDivergence(num_classes=3)
    metric.update(gen, ["a"], real=False)
    metric.update(ref, ["a"], real=True)
    assert float(metric.compute()) == pytest.approx(np_kl(ref.numpy(), gen.numpy()), rel=1e-9)
    assert float(metric.compute()) == pytest.approx(0.5 * np.log(0.5 / (1 + 1e-6)) + 0.5 * np.log(0.5 / 1e-6), rel=1e-4)


def test_kl_reports_unpaired_clips(logits):
    gen, ref = logits
    metric = KLDivergence()
    metric.update(torch.from_numpy(gen[:4]), ["a", "b", "c", "d"], real=False)
    metric.update(torch.from_numpy(ref[:4]), ["b", "c", "d", "e"], real=True)
    value = float(metric.compute())
    report = metric.last_pairing
    assert report.pairs == 3 and report.unpaired_generated == ["a"] and report.unpaired_reference == ["e"]
    assert "1 generated clips without reference: a" in report.summary()
    assert value == pytest.approx(np_kl(ref[:3], gen[1:4]), rel=1e-6)


def test_kl_refuses_unpaired_clips_when_strict(logits):
    gen, ref = logits
    metric = KLDivergence(on_unpaired="error")
    metric.update(torch.from_numpy(gen[:2]), ["a", "b"], real=False)
    metric.update(torch.from_numpy(ref[:2]), ["a", "z"], real=True)
    with pytest.raises(UnpairedClipsError, match="generated clips without reference: b"):
        metric.compute()
    nothing = KLDivergence()
    nothing.update(torch.from_numpy(gen[:1]), ["a"], real=False)
    nothing.update(torch.from_numpy(ref[:1]), ["b"], real=True)
    with pytest.raises(UnpairedClipsError, match="no generated/reference clip pairs"):
        nothing.compute()


def test_kl_counts_a_repeated_id_once(logits):
    gen, ref = logits
    metric = KLDivergence()
    metric.update(torch.from_numpy(gen[:3]), ["a", "b", "c"], real=False)
    metric.update(torch.from_numpy(gen[:1]), ["a"], real=False)  # e.g. DistributedSampler padding
    metric.update(torch.from_numpy(ref[:3]), ["a", "b", "c"], real=True)
    assert float(metric.compute()) == pytest.approx(np_kl(ref[:3], gen[:3]), rel=1e-6)
    assert metric.last_pairing.duplicate_ids == ["a"]


def test_inception_score_matches_numpy():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 4, size=(53, 527)).astype(np.float32)
    metric = InceptionScore()
    metric.update(torch.from_numpy(logits[:20]))
    metric.update(torch.from_numpy(logits[20:]))
    mean, std = metric.compute()
    expected = np_inception_score(logits)
    assert float(mean) == pytest.approx(expected[0], rel=1e-6)
    assert float(std) == pytest.approx(expected[1], rel=1e-5)


def test_inception_score_with_ids_uses_sorted_id_order():
    """With ids the score equals the toolbox's on files sorted by name, whatever order clips arrive in."""
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 4, size=(30, 527)).astype(np.float32)
    ids = [f"f{i:03d}" for i in range(30)]
    shuffled = rng.permutation(30)
    metric = InceptionScore()
    metric.update(torch.from_numpy(logits[shuffled]), [ids[i] for i in shuffled])
    mean, std = metric.compute()
    expected = np_inception_score(logits)
    assert (float(mean), float(std)) == pytest.approx(expected, rel=1e-5)


def test_inception_score_with_few_clips_uses_fewer_splits():
    metric = InceptionScore()
    metric.update(torch.randn(4, 527))
    mean, _ = metric.compute()
    assert metric.splits_used == 4 and float(mean) == pytest.approx(1.0)


def test_inception_score_orders_by_file_name_not_stem():
    """'x-y.wav' sorts before 'x.wav' (as the toolbox's sorted file list) although stem 'x' < 'x-y'."""
    rng = np.random.default_rng(5)
    names = ["x", "x-y", "a", "a_b", "b"] * 1
    names = [f"{n}{i}" if i else n for i in range(4) for n in names]  # 20 clips, several prefix pairs
    logits = rng.normal(0, 4, size=(len(names), 527)).astype(np.float32)
    metric = InceptionScore()
    metric.update(torch.from_numpy(logits), names)
    by_file = sorted(range(len(names)), key=lambda i: names[i] + ".wav")
    by_stem = sorted(range(len(names)), key=lambda i: names[i])
    assert by_file != by_stem
    assert tuple(float(v) for v in metric.compute()) == pytest.approx(np_inception_score(logits[by_file]), rel=1e-5)


def test_kl_sigmoid_variant_matches_the_toolbox_formula(logits):
    ref, gen = logits
    ids = [f"c{i}" for i in range(len(ref))]
    metric = KLDivergence()
    metric.update(torch.from_numpy(ref), ids, real=True)
    metric.update(torch.from_numpy(gen), ids, real=False)
    metric.compute()
    p, q = 1 / (1 + np.exp(-ref.astype(np.float64))), 1 / (1 + np.exp(-gen.astype(np.float64))) + 1e-6
    expected = float((p * (np.log(p) - np.log(q))).sum(axis=1).mean())  # torch's kl_div(log q, p, "sum") / n
    assert float(metric.last_sigmoid) == pytest.approx(expected, rel=1e-9)
