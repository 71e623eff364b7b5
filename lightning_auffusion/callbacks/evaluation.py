"""Objective evaluation during ``fit``: generate a fixed validation prompt set, score it, log it.

Every ``every_n_steps`` training steps and/or at the end of each validation epoch, each rank generates its
share of the prompts (prompt ``i`` always with seed ``seed + i``), the metrics are computed (torchmetrics
syncs them across ranks), and rank 0 logs the scalars (``eval/fd``, ``eval/alignment_accuracy``, ...), a
summary table and a per-clip table with the audio through the trainer's logger (W&B tables and audio when
it is a ``WandbLogger``). Reference features are computed once and kept. The scalars also go into
``trainer.callback_metrics`` so ``ModelCheckpoint`` can monitor them. It runs with the random streams forked (as
``SampleLoggingCallback``): training draws the same noise and dropout with or without it.

With ``ceilings`` and a reference, the reference clips rendered through the module's vocoder alone and through
its VAE then the vocoder (``lightning_auffusion.evaluation.ceilings``) are scored with the same metrics and
logged as ``eval/ceiling_vocoder/<metric>`` and ``eval/ceiling_vae_vocoder/<metric>``, and as rows of the
summary table. They are rendered once, at the first evaluation: an ``AuffusionLDM`` trains only its U-Net,
so its VAE and vocoder (and the ceilings) do not change during ``fit``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_auffusion.evaluation.report import BREAKDOWN, COLUMNS
from lightning_auffusion.evaluation.sources import is_shard_source, iter_folder, iter_shards, list_audio, read_prompts
from lightning_auffusion.metrics.suite import METRICS, MetricSuite

log = logging.getLogger(__name__)


class EvaluationCallback(Callback):
    """Generate ``prompts`` and log FD/FAD/KL/IS/CLAP/alignment during training.

    Args:
        prompts: Prompt file (``.txt`` or a manifest with ids, see ``evaluate``) or a list of prompts.
        reference: Reference audio folder or shards (ids matching the prompt ids pair up for KL); without it
            only IS, CLAP score and alignment are computed.
        every_n_steps: Evaluate every N optimizer steps (0: never on a step count).
        at_validation_end: Evaluate at the end of every validation epoch (not during the sanity check).
        metrics: Metrics to compute, any of fd, fad, kl, is, clap, alignment.
        weights_dir: Folder with the extractors' weight files.
        allow_random_weights: Use random weights for extractors whose files are missing (logged as such).
        max_prompts: Use only the first N prompts.
        num_inference_steps: Denoising steps per generation.
        guidance_scale: Classifier-free guidance scale.
        scheduler: Sampler name.
        duration_seconds: Length of each generated clip.
            Each of these four left unset is the module's own (the ``sampling`` block of its config, what
            ``generate`` and ``evaluate`` use), else the released default (``diffusion.sampling.DEFAULT_SAMPLING``).
        seed: Seed of prompt 0 (prompt i uses seed + i), fixed across evaluations.
        batch_size: Generation and extractor batch size.
        log_audio: How many of rank 0's clips to log as audio (0: none).
        alignment_loudness: Analyser loudness mode (relative or absolute).
        prefix: Prefix of the logged keys.
        ceilings: Also score the stage-ceiling rows (needs ``reference`` and a module with a VAE and front end).
        attention_localisation: Record cross-attention while generating and log the attention localisation
            score (``eval/attention_localisation``) of the multi-event synthetic-grammar prompts.
    """

    def __init__(
        self,
        prompts: str | list[str],
        reference: str | None = None,
        every_n_steps: int = 0,
        at_validation_end: bool = True,
        metrics: list[str] = list(METRICS),  # noqa: B006 - read only
        weights_dir: str | None = None,
        allow_random_weights: bool = False,
        max_prompts: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        scheduler: str | None = None,
        duration_seconds: float | None = None,
        seed: int = 0,
        batch_size: int = 8,
        log_audio: int = 4,
        alignment_loudness: Literal["relative", "absolute"] = "relative",
        prefix: str = "eval/",
        ceilings: bool = True,
        attention_localisation: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(prompts, (str, Path)) and not list(prompts):
            raise ValueError("EvaluationCallback needs at least one prompt")
        # a prompt file is read on first use, so a config naming data that is not there yet still builds
        self._prompt_source, self._max_prompts, self._prompts = prompts, max_prompts, None
        self.reference = reference
        self.metric_names = [m for m in metrics if reference or m not in ("fd", "fad", "kl")]
        self.every_n_steps = int(every_n_steps)
        self.at_validation_end = at_validation_end
        self.weights_dir = weights_dir
        self.allow_random_weights = allow_random_weights
        self.sampling_overrides = {
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "scheduler": scheduler,
            "duration_seconds": duration_seconds,
        }
        self.sampling: dict = {}  # resolved against the module's own settings in ``run``
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.log_audio = int(log_audio)
        self.alignment_loudness = alignment_loudness
        self.prefix = prefix
        self.ceilings = bool(ceilings)
        self.attention_localisation = bool(attention_localisation)
        self._localisation = None
        self.ceiling_results: dict[str, dict] = {}
        self.suite: MetricSuite | None = None
        self._reference_done = False
        self._last_step = -1
        self.last_results: dict = {}

    @property
    def prompts(self) -> list[tuple[str, str]]:
        """(id, prompt) pairs, read from the prompt file on first use."""
        if self._prompts is None:
            source = self._prompt_source
            items = (
                read_prompts(source)
                if isinstance(source, (str, Path))
                else {f"{i:05d}": p for i, p in enumerate(source)}
            )
            pairs = list(items.items())
            self._prompts = pairs[: self._max_prompts] if self._max_prompts else pairs
            if not self._prompts:
                raise ValueError("EvaluationCallback needs at least one prompt")
        return self._prompts

    # ------------------------------------------------------------------------------------------ setup
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or self.suite is not None:
            return
        self.suite = MetricSuite(
            self.metric_names,
            weights_dir=self.weights_dir,
            allow_random_weights=self.allow_random_weights,
            device=trainer.strategy.root_device,
            batch_size=self.batch_size,
            alignment_loudness=self.alignment_loudness,
            keep_reference=True,
        )
        for name in self.suite.random_weights:
            log.warning(
                "evaluation: %s runs with random weights; logged numbers are not comparable with published ones", name
            )

    def _reference_batches(self, trainer: Trainer):
        """This rank's share of the reference clips, in batches."""
        rank, world = trainer.global_rank, trainer.world_size
        if Path(self.reference).is_dir() and not is_shard_source(self.reference):
            files = list(list_audio(self.reference).items())[rank::world]
            return iter_folder(dict(files), self.batch_size, [])
        return (b for i, b in enumerate(iter_shards(self.reference, self.batch_size)) if i % world == rank)

    def _add_reference(self, trainer: Trainer) -> None:
        if self._reference_done or not self.reference or not any(m in self.suite.names for m in ("fd", "fad", "kl")):
            self._reference_done = True
            return
        for batch in self._reference_batches(trainer):
            self.suite.update(batch.clips, batch.rates, batch.ids, real=True)
        self._reference_done = True

    def _score_ceilings(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Render and score the stage-ceiling rows once (see the module docstring); a module without a VAE or
        front end, or no reference, skips them with a log line."""
        if not self.ceilings or self.ceiling_results:
            return
        self.ceilings = False  # tried once, whatever happens below
        if not self.reference:
            log.info("evaluation: no reference, so no stage-ceiling rows")
            return
        if not all(hasattr(pl_module, name) for name in ("vae", "frontend", "noise_scheduler")):
            log.info("evaluation: %s has no VAE/front end: no stage-ceiling rows", type(pl_module).__name__)
            return
        from lightning_auffusion.evaluation.ceilings import StageCeilings, ceiling_pipeline

        stages = StageCeilings(ceiling_pipeline(pl_module))
        captions = dict(self.prompts)
        for row in stages.rows:
            for batch in self._reference_batches(trainer):
                clips = stages.render(row, batch.clips, batch.rates)
                self.suite.update(
                    clips, stages.sample_rate, batch.ids, [captions.get(i) for i in batch.ids], real=False
                )
            self.ceiling_results[row] = self.suite.compute()
            self.suite.reset()

    # ------------------------------------------------------------------------------------------ generation
    def generate_audio(
        self, pl_module: LightningModule, prompts: list[str], seeds: list[int]
    ) -> tuple[torch.Tensor, int]:
        """(B, T) float waveforms and their rate for ``prompts`` (one seed each)."""
        from lightning_auffusion.diffusion.sampling import generate

        if self._localisation is None:
            out = generate(pl_module, prompts, seed=seeds, batch_size=self.batch_size, **self.sampling)
        else:
            from lightning_auffusion.attention.recording import generate_recording_attention

            out, maps = generate_recording_attention(
                pl_module, prompts, seed=seeds, batch_size=self.batch_size, **self.sampling
            )
            self._localisation.add(maps, [str(s) for s in seeds])
        return out.audio, int(out.sample_rate)

    # ------------------------------------------------------------------------------------------ hooks
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.run(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.at_validation_end and not trainer.sanity_checking and trainer.global_step != self._last_step:
            self.run(trainer, pl_module)

    # ------------------------------------------------------------------------------------------ evaluation
    def run(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        """Generate, score, log; returns the metrics (same on every rank). Training's random streams (torch's,
        Python's, NumPy's) are left as they were, so evaluating in the loop does not change what is trained."""
        from lightning_auffusion.callbacks.sample_logging import isolated_rng

        with isolated_rng(trainer.strategy.root_device):
            return self._evaluate(trainer, pl_module)

    @torch.no_grad()
    def _evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        if self.suite is None:
            self.setup(trainer, pl_module, "fit")
        self._last_step = trainer.global_step
        from lightning_auffusion.diffusion.sampling import resolve_sampling

        self.sampling = resolve_sampling(getattr(pl_module, "sampling", None), **self.sampling_overrides)
        self._add_reference(trainer)
        rank, world = trainer.global_rank, trainer.world_size
        mine = [(i, *self.prompts[i]) for i in range(rank, len(self.prompts), world)]
        was_training = pl_module.training
        pl_module.eval()
        clips, rate = [], 16000
        if self.attention_localisation:
            from lightning_auffusion.attention.localisation import LocalisationCollector

            self._localisation = LocalisationCollector(pl_module.frontend, self.sampling["duration_seconds"])
            self._localisation.metric.to(trainer.strategy.root_device)
        try:
            for start in range(0, len(mine), self.batch_size):
                chunk = mine[start : start + self.batch_size]
                seeds = [self.seed + i for i, _, _ in chunk]
                audio, rate = self.generate_audio(pl_module, [c for _, _, c in chunk], seeds)
                audio = audio.detach().float().cpu()
                self.suite.update(list(audio), rate, [k for _, k, _ in chunk], [c for _, _, c in chunk], real=False)
                clips.extend(audio[: max(self.log_audio - len(clips), 0)])
            results = self.suite.compute()
            records = list(self.suite.records)
            self.suite.reset()
            self._score_ceilings(trainer, pl_module)
        finally:
            pl_module.train(was_training)
        if self._localisation is not None:
            results.update(self._localisation.results())
            self._localisation = None
        self.last_results = results
        scalars = _scalars(self.prefix, results)
        for row, row_results in self.ceiling_results.items():
            scalars.update(_scalars(f"{self.prefix}{row}/", row_results))
        for key, value in scalars.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        if trainer.is_global_zero and trainer.logger is not None:
            self._log(trainer, scalars, results, records, clips, rate)
        return results

    def _log(self, trainer: Trainer, scalars: dict, results: dict, records: list[dict], clips: list, rate: int) -> None:
        logger, step = trainer.logger, trainer.global_step
        random = self.suite.random_weights
        scalars[f"{self.prefix}random_weights"] = float(bool(random))
        logger.log_metrics(scalars, step=step)
        if hasattr(logger, "log_table"):
            rows = {"generated": results, **self.ceiling_results}
            cols = [c for c in COLUMNS if any(c[1] in r for r in rows.values())]
            summary = [
                [step, name] + [r.get(key) for _, key, _ in cols] + [", ".join(random) or "none"]
                for name, r in rows.items()
            ]
            logger.log_table(
                key=f"{self.prefix}summary",
                columns=["step", "row"] + [c[0] for c in cols] + ["random weights"],
                data=summary,
                step=step,
            )
            breakdown = [
                [step, name] + [r.get(key) for _, key in BREAKDOWN]
                for name, r in rows.items()
                if any(r.get(key) is not None for _, key in BREAKDOWN)
            ]
            if breakdown:
                logger.log_table(
                    key=f"{self.prefix}alignment_breakdown",
                    columns=["step", "row"] + [title for title, _ in BREAKDOWN],
                    data=breakdown,
                    step=step,
                )
            rows = []
            for record in records:
                verdicts = record.get("alignment") or {}
                acc = sum(verdicts.values()) / len(verdicts) if verdicts else None
                rows.append([record["id"], record["caption"], record.get("clap"), acc])
            logger.log_table(
                key=f"{self.prefix}clips",
                columns=["id", "prompt", "clap_cosine", "alignment_accuracy"],
                data=rows,
                step=step,
            )
        if clips and hasattr(logger, "log_audio"):
            logger.log_audio(
                key=f"{self.prefix}audio",
                audios=[np.asarray(c.numpy()) for c in clips],
                step=step,
                sample_rate=[rate] * len(clips),
                caption=[r["caption"] for r in records[: len(clips)]],
            )


def _scalars(prefix: str, results: dict) -> dict[str, float]:
    """The numeric, finite results as ``{prefix + key: float}``."""
    return {
        f"{prefix}{k}": float(v)
        for k, v in results.items()
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))
    }
