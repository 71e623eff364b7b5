"""Run the extractors once per clip and feed every selected metric: the engine of ``evaluate`` and the callback.

``MetricSuite.update(clips, sample_rates, ids, captions, real)`` takes raw clips (numpy or torch, (T,) or
(channels, T), any rate); each extractor prepares its own input (Cnn14: channel 0, mean removed, 16 kHz;
VGGish: channel mean, 16 kHz; CLAP: 48 kHz, 480000 samples; the analyser: the clip as it is). Resampling
is counted and reported. ``compute()`` syncs across DDP ranks (through torchmetrics) and returns plain
floats; a metric that cannot be computed (too few clips, no captions) gives ``None`` and a reason in
``details["errors"]``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import SumMetric

from lightning_auffusion.metrics.alignment import AlignmentAccuracy
from lightning_auffusion.metrics.clap_score import ClapScore
from lightning_auffusion.metrics.extractors.clap import CLAP_SAMPLE_RATE, load_clap, prepare_clap_audio
from lightning_auffusion.metrics.extractors.cnn14 import Cnn14Extractor, load_cnn14, prepare_cnn14_audio
from lightning_auffusion.metrics.extractors.vggish import VGGishExtractor, load_vggish, prepare_vggish_audio
from lightning_auffusion.metrics.extractors.weights import WeightStatus, check_present
from lightning_auffusion.metrics.fad import FrechetAudioDistance
from lightning_auffusion.metrics.fd import FrechetDistance
from lightning_auffusion.metrics.inception_score import InceptionScore
from lightning_auffusion.metrics.kl import KLDivergence, UnpairedClipsError

log = logging.getLogger(__name__)

METRICS = ("fd", "fad", "kl", "is", "clap", "alignment")
CNN14_METRICS = ("fd", "kl", "is")
EXTRACTOR_RATE = 16000


def _mono(clip: np.ndarray | Tensor) -> np.ndarray:
    x = clip.detach().float().cpu().numpy() if isinstance(clip, Tensor) else np.asarray(clip, dtype=np.float32)
    return x.mean(axis=0) if x.ndim == 2 else x


def build_clap(backend: str, weights_dir, download: bool, allow_random: bool, device, batch_size: int, pad_mode: str):
    """The CLAP embedder of ``backend``: "transformers", "laion_clap", or "auto" (laion_clap when usable)."""
    from lightning_auffusion.metrics.extractors import laion_clap_backend as lc

    if backend not in ("auto", "transformers", "laion_clap"):
        raise ValueError(f"clap_backend must be 'auto', 'transformers' or 'laion_clap', got {backend!r}")
    if backend == "laion_clap" or (backend == "auto" and lc.laion_clap_available(weights_dir=weights_dir)):
        return lc.load_laion_clap(weights_dir=weights_dir, download=download, device=device, batch_size=batch_size)
    return load_clap(
        weights_dir=weights_dir,
        download=download,
        allow_random=allow_random,
        device=device,
        batch_size=batch_size,
        pad_mode=pad_mode,
    )


def alignment_results(metric: AlignmentAccuracy, prefix: str = "alignment_") -> dict[str, float | int | None]:
    """``metric.compute()`` as plain values: ratios as floats (None where nothing was judged), counts as ints."""
    out: dict[str, float | int | None] = {}
    for key, value in metric.compute().items():
        value = float(value)
        if key.endswith("accuracy"):
            out[prefix + key] = None if np.isnan(value) else value
        else:
            out[prefix + key] = int(value)
    return out


class MetricSuite:
    """The selected metrics with their extractors. Pre-built extractors may be passed in (tests, callbacks)."""

    def __init__(
        self,
        metrics: Sequence[str] = METRICS,
        *,
        weights_dir: str | None = None,
        allow_random_weights: bool = False,
        download: bool = False,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        clap_backend: str = "auto",
        clap_pad_mode: str = "repeatpad",
        kl_unpaired: str = "report",
        alignment_loudness: str = "relative",
        keep_reference: bool = False,
        cnn14: Cnn14Extractor | None = None,
        vggish: VGGishExtractor | None = None,
        clap=None,
        alignment_scorer: Callable | None = None,
    ) -> None:
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
        self.names = tuple(m for m in METRICS if m in metrics)
        self.device = torch.device(device)
        self.statuses: dict[str, WeightStatus] = {}
        load = {"weights_dir": weights_dir, "download": download, "allow_random": allow_random_weights}
        if not allow_random_weights:  # every missing file in one error, before building anything
            needed = ["cnn14_16k"] if cnn14 is None and any(m in self.names for m in CNN14_METRICS) else []
            needed += ["vggish"] if vggish is None and "fad" in self.names else []
            check_present(needed, weights_dir, download)
        self.cnn14 = self.vggish = self.clap = None
        if any(m in self.names for m in CNN14_METRICS):
            if cnn14 is None:
                model, self.statuses["Cnn14"] = load_cnn14(**load)
                cnn14 = Cnn14Extractor(model, self.device, batch_size)
            self.cnn14 = cnn14
        if "fad" in self.names:
            if vggish is None:
                model, self.statuses["VGGish"] = load_vggish(**load)
                vggish = VGGishExtractor(model, self.device)
            self.vggish = vggish
        if "clap" in self.names:
            if clap is None:
                clap, self.statuses["CLAP"] = build_clap(
                    clap_backend, weights_dir, download, allow_random_weights, self.device, batch_size, clap_pad_mode
                )
            self.clap = clap
        self.clap_pad_mode = clap_pad_mode
        keep = {"reset_real_features": not keep_reference}
        self.metrics: dict[str, torch.nn.Module] = {}
        if "fd" in self.names:
            self.metrics["fd"] = FrechetDistance(2048, **keep)
        if "fad" in self.names:
            self.metrics["fad"] = FrechetAudioDistance(128, **keep)
        if "kl" in self.names:
            self.metrics["kl"] = KLDivergence(on_unpaired=kl_unpaired, **keep)
        if "is" in self.names:
            self.metrics["is"] = InceptionScore()
        if "clap" in self.names:
            self.metrics["clap"] = ClapScore()
        if "alignment" in self.names:
            self.metrics["alignment"] = AlignmentAccuracy(loudness=alignment_loudness, scorer=alignment_scorer)
        self.counts = {"generated": SumMetric(), "reference": SumMetric(), "uncaptioned": SumMetric()}
        self.keep_reference = keep_reference
        for metric in [*self.metrics.values(), *self.counts.values()]:
            metric.to(self.device)
        self._zero_counts()
        self.resampling: Counter[str] = Counter()
        self.records: list[dict] = []
        self.details: dict = {}
        self._text_cache: dict[str, Tensor] = {}

    @property
    def random_weights(self) -> list[str]:
        """Names of extractors running with random weights."""
        return [name for name, status in self.statuses.items() if not status.pretrained]

    def _note_rates(self, side: str, rates: Sequence[int]) -> None:
        for sr in rates:
            if (self.cnn14 or self.vggish) and sr != EXTRACTOR_RATE:
                users = ", ".join(n for n, e in (("Cnn14", self.cnn14), ("VGGish", self.vggish)) if e is not None)
                self.resampling[f"{side}: {sr} Hz -> {EXTRACTOR_RATE} Hz for {users}"] += 1
            if self.clap is not None and side == "generated" and sr != CLAP_SAMPLE_RATE:
                self.resampling[f"{side}: {sr} Hz -> {CLAP_SAMPLE_RATE} Hz for CLAP"] += 1

    def _texts(self, captions: list[str]) -> Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self._text_cache]
        if missing:
            for caption, emb in zip(missing, self.clap.text_embeddings(missing)):
                self._text_cache[caption] = emb
        return torch.stack([self._text_cache[c] for c in captions])

    def update(
        self,
        clips: Sequence[np.ndarray | Tensor],
        sample_rates: int | Sequence[int],
        ids: Sequence[str],
        captions: Sequence[str | None] | None = None,
        real: bool = False,
    ) -> None:
        """Add clips of one side (``real=True``: reference) with their ids (file stems) and, for generated clips,
        their prompts (needed by CLAP score and alignment)."""
        n = len(clips)
        rates = [int(sample_rates)] * n if isinstance(sample_rates, int) else [int(r) for r in sample_rates]
        if len(rates) != n or len(ids) != n or (captions is not None and len(captions) != n):
            raise ValueError("clips, sample_rates, ids and captions must have the same length")
        if n == 0:
            return
        side = "reference" if real else "generated"
        self._note_rates(side, rates)
        self.counts[side].update(float(n))
        if self.cnn14 is not None:
            feats = self.cnn14([prepare_cnn14_audio(c, sr) for c, sr in zip(clips, rates)])
            if "fd" in self.metrics:
                self.metrics["fd"].update(feats["embedding"], real=real)
            if "kl" in self.metrics:
                self.metrics["kl"].update(feats["logits"], list(ids), real=real)
            if "is" in self.metrics and not real:
                self.metrics["is"].update(feats["logits"], list(ids))
        if self.vggish is not None:
            frames, _ = self.vggish([prepare_vggish_audio(c, sr) for c, sr in zip(clips, rates)])
            self.metrics["fad"].update(frames, real=real)
        if real:
            return
        records = [{"id": clip_id, "caption": captions[i] if captions else None} for i, clip_id in enumerate(ids)]
        keep = [i for i, r in enumerate(records) if r["caption"]]
        self.counts["uncaptioned"].update(float(n - len(keep)))
        if keep and self.clap is not None:
            prepared = [prepare_clap_audio(clips[i], rates[i], self.clap_pad_mode) for i in keep]
            audio = self.clap.audio_embeddings(prepared)
            text = self._texts([records[i]["caption"] for i in keep])
            self.metrics["clap"].update(audio, text)
            for i, cosine in zip(keep, (audio * text).sum(-1).tolist()):
                records[i]["clap"] = cosine
        if keep and "alignment" in self.metrics:
            metric = self.metrics["alignment"]
            verdicts = [metric.scorer(_mono(clips[i]), rates[i], records[i]["caption"]) for i in keep]
            metric.update([None] * len(keep), [records[i]["caption"] for i in keep], rates[0], verdicts=verdicts)
            for i, verdict in zip(keep, verdicts):
                records[i]["alignment"] = {k: bool(v) for k, v in verdict.items()}
        self.records.extend(records)

    def _safe(self, name: str, fn: Callable):
        try:
            return fn()
        except UnpairedClipsError as err:
            if self.metrics["kl"].on_unpaired == "error":
                raise
            self.details["errors"][name] = str(err)
        except ValueError as err:
            self.details["errors"][name] = str(err)
        log.warning("%s not computed: %s", name, self.details["errors"][name])
        return None

    def compute(self) -> dict[str, float | int | None]:
        """All selected metrics as floats (``None`` where not computable); counts; ``self.details`` explains."""
        self.details = {"errors": {}}
        out: dict[str, float | int | None] = {k: int(m.compute()) for k, m in self.counts.items()}
        if "fd" in self.metrics:
            out["fd"] = self._safe("fd", lambda: float(self.metrics["fd"].compute()))
        if "fad" in self.metrics:
            out["fad"] = self._safe("fad", lambda: float(self.metrics["fad"].compute()))
        if "kl" in self.metrics:
            out["kl"] = self._safe("kl", lambda: float(self.metrics["kl"].compute()))
            out["kl_sigmoid"] = None if out["kl"] is None else float(self.metrics["kl"].last_sigmoid)
            report = self.metrics["kl"].last_pairing
            self.details["kl_pairing"] = {
                "pairs": report.pairs,
                "summary": report.summary(),
                "unpaired_generated": report.unpaired_generated,
                "unpaired_reference": report.unpaired_reference,
            }
        if "is" in self.metrics:
            score = self._safe("is", lambda: tuple(float(v) for v in self.metrics["is"].compute()))
            out["is_mean"], out["is_std"] = score if score else (None, None)
            self.details["is_splits"] = self.metrics["is"].splits_used
        if "clap" in self.metrics:
            out["clap_score"] = self._safe("clap", lambda: float(self.metrics["clap"].compute()))
        if "alignment" in self.metrics:
            out.update(alignment_results(self.metrics["alignment"]))
        return out

    def reset(self) -> None:
        """Forget generated clips (and reference clips unless ``keep_reference``)."""
        for metric in self.metrics.values():
            metric.reset()
        for side, metric in self.counts.items():
            if side != "reference" or not self.keep_reference:
                metric.reset()
        self.records = []
        kept = {k: v for k, v in self.resampling.items() if self.keep_reference and k.startswith("reference")}
        self.resampling = Counter(kept)
        self._zero_counts()

    def _zero_counts(self) -> None:
        for metric in self.counts.values():  # an update of 0 keeps torchmetrics from warning on compute
            metric.update(0.0)
