"""The ``evaluate`` subcommand: generated audio against reference audio -> metrics.json + metrics.md."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from lightning_auffusion.audio.io import save_wav
from lightning_auffusion.errors import UserInputError
from lightning_auffusion.paths import file_in
from lightning_auffusion.evaluation.report import build_report, markdown_report, write_report
from lightning_auffusion.evaluation.sources import (
    Skipped,
    is_shard_source,
    iter_folder,
    iter_shards,
    list_audio,
    read_prompts,
)
from lightning_auffusion.metrics.suite import METRICS, MetricSuite

log = logging.getLogger(__name__)


def generate_folder(checkpoint: str, prompts: dict[str, str], folder: Path, *, num_inference_steps: int | None,
                    guidance_scale: float | None, scheduler: str | None, seed: int, batch_size: int,
                    device: str) -> None:
    """Generate one clip per prompt with an ``AuffusionLDM`` checkpoint into ``folder/<id>.wav``.

    Prompt ``i`` (in file order) uses seed ``seed + i``, so a clip does not depend on the batching. Sampling
    settings left at None come from the checkpoint's own ``sampling`` settings.
    """
    from lightning_auffusion.diffusion.module import load_ldm_checkpoint
    from lightning_auffusion.diffusion.sampling import generate, resolve_sampling

    module = load_ldm_checkpoint(checkpoint, map_location=device).eval()
    settings = resolve_sampling(module.sampling, num_inference_steps=num_inference_steps,
                                guidance_scale=guidance_scale, scheduler=scheduler, duration_seconds=None)
    log.info("generating %d clips with %s", len(prompts), settings)
    items = list(prompts.items())
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        out = generate(module, [caption for _, caption in chunk], **settings,
                       seed=[seed + start + i for i in range(len(chunk))], batch_size=batch_size)
        for (clip_id, _), audio in zip(chunk, out.audio):
            save_wav(file_in(folder, clip_id, ".wav"), audio, out.sample_rate)
        log.info("generated %d / %d clips", min(start + batch_size, len(items)), len(items))


def evaluate(
    generated: str | None = None,
    reference: str | None = None,
    checkpoint: str | None = None,
    prompts: str | None = None,
    output: str = "eval",
    metrics: list[str] = list(METRICS),  # noqa: B006 - read only; jsonargparse shows the default
    weights_dir: str | None = None,
    allow_random_weights: bool = False,
    download_weights: bool = False,
    clap_backend: Literal["auto", "transformers", "laion_clap"] = "auto",
    kl_unpaired: Literal["report", "error"] = "report",
    alignment_loudness: Literal["relative", "absolute"] = "relative",
    device: str = "cpu",
    batch_size: int = 8,
    limit: int | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    scheduler: str | None = None,
    seed: int = 0,
) -> dict:
    """Score generated audio against reference audio with FD, FAD, KL, IS, CLAP score and alignment accuracy.

    Generated and reference clips are paired by file name (stem) for KL; FD, FAD and IS use every clip.
    Writes ``<output>/metrics.json``, ``<output>/metrics.md`` (the paper's column order) and
    ``<output>/clips.jsonl`` (per-clip CLAP cosine and alignment verdicts) and returns the report.

    Args:
        generated: Folder of generated audio (file stem = clip id). Leave out with ``checkpoint``.
        reference: Folder of reference audio, or shards (a ``.tar`` file, pattern, ``index.json`` or a folder
            of shards), keyed by file stem / sample key. Needed for FD, FAD and KL.
        checkpoint: An ``AuffusionLDM`` checkpoint: generate one clip per prompt of ``prompts`` first,
            into ``<output>/generated/``.
        prompts: Prompt list: ``.txt`` (one per line, ids 00000, 00001, ...) or a manifest (``.jsonl``,
            ``.json``, ``.csv``, ``.tsv``) with an id and a caption per row. Gives CLAP score and alignment
            their captions; with ``checkpoint`` it is what gets generated.
        output: Folder for the reports (created).
        metrics: Metrics to compute, any of fd, fad, kl, is, clap, alignment.
        weights_dir: Folder holding the extractors' weight files (default ``$LIGHTNING_AUFFUSION_WEIGHTS``
            or ``~/.cache/lightning_auffusion/weights``).
        allow_random_weights: Run extractors whose weights are missing with random weights instead of
            stopping; the report then says the numbers are not comparable with published ones.
        download_weights: Fetch missing weight files from their published addresses (needs network).
        clap_backend: ``auto`` (laion_clap when installed with its checkpoint, else transformers),
            ``transformers`` or ``laion_clap``.
        kl_unpaired: ``report`` (KL over the pairs found, unpaired clips listed) or ``error`` (refuse).
        alignment_loudness: Analyser loudness mode, ``relative`` (peak-normalised audio) or ``absolute``.
        device: Torch device for the extractors (and generation).
        batch_size: Clips per extractor (and generation) batch.
        limit: Use only the first N generated clips (sorted by id), for a quick look.
        num_inference_steps: Denoising steps when generating from ``checkpoint`` (default: the
            checkpoint's own sampling settings, else 100 as released; likewise the next two).
        guidance_scale: Classifier-free guidance scale when generating.
        scheduler: Sampler name when generating (pndm, ddim, ...).
        seed: Seed of the first prompt when generating (prompt i uses seed + i).
    """
    if kl_unpaired not in ("report", "error"):
        raise UserInputError(f"kl_unpaired must be 'report' or 'error', got {kl_unpaired!r}")
    captions = read_prompts(prompts) if prompts else {}
    out_dir = Path(output)
    if checkpoint:
        if generated:
            raise UserInputError("give either generated (a folder) or checkpoint (+ prompts), not both")
        if not captions:
            raise UserInputError("checkpoint needs prompts: the prompt list to generate from")
        items = dict(list(captions.items())[:limit]) if limit else captions
        generated = str(out_dir / "generated")
        generate_folder(checkpoint, items, Path(generated), num_inference_steps=num_inference_steps,
                        guidance_scale=guidance_scale, scheduler=scheduler, seed=seed, batch_size=batch_size,
                        device=device)
    if not generated:
        raise UserInputError("nothing to evaluate: give generated (a folder of audio) or checkpoint + prompts")
    selected = [m for m in metrics if m in METRICS]
    if len(selected) != len(metrics):
        raise UserInputError(f"unknown metrics {sorted(set(metrics) - set(METRICS))}; choose from {list(METRICS)}")
    if reference is None:
        dropped = [m for m in selected if m in ("fd", "fad", "kl")]
        if dropped:
            log.warning("no reference given: %s skipped", ", ".join(dropped))
        selected = [m for m in selected if m not in dropped]
    if not captions:
        dropped = [m for m in selected if m in ("clap", "alignment")]
        if dropped:
            log.warning("no prompts given: %s skipped (they need each clip's caption)", ", ".join(dropped))
        selected = [m for m in selected if m not in dropped]
    if not selected:
        raise UserInputError("no metric can be computed with these inputs (see the warnings above)")

    suite = MetricSuite(selected, weights_dir=weights_dir, allow_random_weights=allow_random_weights,
                        download=download_weights, device=device, batch_size=batch_size, clap_backend=clap_backend,
                        kl_unpaired=kl_unpaired, alignment_loudness=alignment_loudness)
    skipped: list[Skipped] = []
    gen_files = list_audio(generated, skipped)
    if limit:
        gen_files = dict(list(gen_files.items())[:limit])
    if not gen_files:
        raise UserInputError(f"no audio files in {generated}")
    for batch in iter_folder(gen_files, batch_size, skipped):
        suite.update(batch.clips, batch.rates, batch.ids, [captions.get(i) for i in batch.ids], real=False)
    ref_kind = None
    if reference is not None and any(m in selected for m in ("fd", "fad", "kl")):
        if Path(reference).is_dir() and not is_shard_source(reference):
            ref_kind = "folder"
            batches = iter_folder(list_audio(reference, skipped), batch_size, skipped)
        else:
            ref_kind = "shards"
            batches = iter_shards(reference, batch_size)
        reference_clips = 0
        for batch in batches:
            reference_clips += len(batch)
            suite.update(batch.clips, batch.rates, batch.ids, real=True)
        if not reference_clips:
            raise UserInputError(f"no usable reference audio in {reference}: FD, FAD and KL need reference clips "
                                 "(check the path, or leave out --reference to skip those metrics)")

    results = suite.compute()
    report = build_report(
        results,
        suite.details,
        {name: status.describe() for name, status in suite.statuses.items()},
        suite.random_weights,
        dict(suite.resampling),
        [{"source": s.source, "reason": s.reason} for s in skipped],
        {"generated": generated, "reference": reference, "reference_kind": ref_kind, "checkpoint": checkpoint,
         "prompts": prompts, "metrics": selected},
    )
    json_path, md_path = write_report(report, out_dir)
    with open(out_dir / "clips.jsonl", "w", encoding="utf-8") as fh:
        for record in suite.records:
            fh.write(json.dumps(record) + "\n")
    print(markdown_report(report))
    log.info("wrote %s and %s", json_path, md_path)
    return report
