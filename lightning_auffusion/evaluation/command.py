"""The ``evaluate`` subcommand: generated audio against reference audio -> metrics.json + metrics.md."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from typing_extensions import Unpack

from lightning_auffusion.audio.io import save_wav
from lightning_auffusion.diffusion.options import GenerateOptions, split_options
from lightning_auffusion.errors import UserInputError
from lightning_auffusion.evaluation.ceilings import (
    CEILING_ROWS,
    GENERATED_ROW,
    StageCeilings,
    ceiling_pipeline,
    reference_key,
)
from lightning_auffusion.evaluation.report import build_report, markdown_report, write_report
from lightning_auffusion.evaluation.sources import (
    Batch,
    Skipped,
    is_shard_source,
    iter_folder,
    iter_shards,
    list_audio,
    read_prompts,
)
from lightning_auffusion.metrics.suite import METRICS, MetricSuite
from lightning_auffusion.paths import file_in
from lightning_auffusion.progress import progress_bar

log = logging.getLogger(__name__)


def load_ldm(checkpoint: str, device):
    """An ``AuffusionLDM`` checkpoint in eval mode on ``device`` (for the ceiling rows of a generated folder)."""
    from lightning_auffusion.diffusion.module import load_ldm_checkpoint

    return load_ldm_checkpoint(checkpoint, map_location=device).eval()


def generate_folder(
    module,
    prompts: dict[str, str],
    folder: Path,
    *,
    num_inference_steps: int | None,
    guidance_scale: float | None,
    scheduler: str | None,
    seed: int,
    batch_size: int,
    attention_localisation: bool = False,
    duration_seconds: float | None = None,
    negative_prompt: str | None = None,
    progress: bool = True,
):
    """Generate one clip per prompt with an ``AuffusionLDM`` or ``AuffusionPipeline`` into ``folder/<id>.wav``.

    Prompt ``i`` (in file order) uses seed ``seed + i``, so a clip does not depend on the batching. Sampling
    settings left at None come from the module's own ``sampling`` settings. With ``attention_localisation``
    the cross-attention is recorded (the audio is unchanged) and a ``LocalisationCollector`` holding the
    attention localisation is returned (see ``lightning_auffusion.attention.localisation``), else None.
    """
    from lightning_auffusion.diffusion.sampling import generate, resolve_sampling

    settings = resolve_sampling(
        module.sampling,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        scheduler=scheduler,
        duration_seconds=duration_seconds,
    )
    if negative_prompt:
        settings["negative_prompts"] = negative_prompt
    log.info("generating %d clips with %s", len(prompts), settings)
    items = list(prompts.items())
    folder.mkdir(parents=True, exist_ok=True)
    from lightning_auffusion.attention.localisation import LocalisationCollector

    scorer = LocalisationCollector(module.frontend, settings["duration_seconds"]) if attention_localisation else None
    bar = progress_bar(total=len(items), unit="clip", desc="generate", enabled=progress)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        captions = [caption for _, caption in chunk]
        seeds = [seed + start + i for i in range(len(chunk))]
        if scorer is None:
            out = generate(module, captions, **settings, seed=seeds, batch_size=batch_size)
        else:
            from lightning_auffusion.attention.recording import generate_recording_attention

            out, maps = generate_recording_attention(module, captions, **settings, seed=seeds, batch_size=batch_size)
            scorer.add(maps, [clip_id for clip_id, _ in chunk])
        for (clip_id, _), audio in zip(chunk, out.audio):
            save_wav(file_in(folder, clip_id, ".wav"), audio, out.sample_rate)
        bar.update(len(chunk))
        log.debug("generated %d / %d clips", min(start + batch_size, len(items)), len(items))
    bar.close()
    return scorer


def evaluate(
    generated: str | None = None,
    reference: str | None = None,
    prompts: str | None = None,
    output: str = "eval",
    metrics: list[str] = list(METRICS),  # noqa: B006 - read only; jsonargparse shows the default
    weights_dir: str | None = None,
    allow_random_weights: bool = False,
    download_weights: bool = False,
    clap_backend: Literal["auto", "transformers", "laion_clap"] = "auto",
    kl_unpaired: Literal["report", "error"] = "report",
    alignment_loudness: Literal["relative", "absolute"] = "relative",
    batch_size: int = 8,
    limit: int | None = None,
    ceilings: bool = True,
    ceiling_checkpoint: str | None = None,
    ceiling_cache: str | None = None,
    attention_localisation: bool = False,
    progress: bool = True,
    **options: Unpack[GenerateOptions],
) -> dict:
    """Score generated audio against reference audio with FD, FAD, KL, IS, CLAP score and alignment accuracy.

    Generated and reference clips are paired by file name (stem) for KL; FD, FAD and IS use every clip.
    Writes ``<output>/metrics.json``, ``<output>/metrics.md`` (the paper's column order) and
    ``<output>/clips.jsonl`` (per-clip CLAP cosine and alignment verdicts, with the row they belong to) and
    returns the report. With a model (``checkpoint`` or ``pretrained``, or ``ceiling_checkpoint`` for a generated folder) and a
    reference, two more rows are scored with every metric: the reference clips through the model's vocoder
    alone (``ceiling_vocoder``) and through its VAE then the vocoder (``ceiling_vae_vocoder``), see
    ``lightning_auffusion.evaluation.ceilings``. ``report["metrics"]`` is the generated row;
    ``report["rows"]`` holds every row.

    Args:
        generated: Folder of generated audio (file stem = clip id). Leave out with a model to generate from.
        reference: Folder of reference audio, or shards (a ``.tar`` file, pattern, ``index.json`` or a folder
            of shards), keyed by file stem / sample key. Needed for FD, FAD, KL and the stage ceilings.
        prompts: Prompt list: ``.txt`` (one per line, ids 00000, 00001, ...) or a manifest (``.jsonl``,
            ``.json``, ``.csv``, ``.tsv``) with an id and a caption per row. Gives CLAP score and alignment
            their captions (reference clips take the caption of their id); with a model (``checkpoint`` or
            ``pretrained``) it is what gets generated, into ``<output>/generated/``.
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
        batch_size: Clips per extractor (and generation) batch.
        limit: Use only the first N generated clips (sorted by id), for a quick look.
        ceilings: Score the stage-ceiling rows when a model and a reference are given.
        ceiling_checkpoint: An ``AuffusionLDM`` checkpoint whose front end, VAE and vocoder render the
            ceiling rows when ``generated`` is a folder (with ``checkpoint`` that model is used).
        ceiling_cache: A folder that keeps the ceiling rows' rendered clips, keyed by a digest of the decoders
            and the reference: evaluations sharing them (a sweep's trials) render each row once (see
            ``lightning_auffusion.evaluation.ceilings``). ``sweep`` sets it to ``<sweep folder>/ceiling_cache``.
        attention_localisation: With a model: record cross-attention while generating and report the
            attention localisation score (``attention_localisation`` in the generated row,
            ``<output>/localisation.json`` per prompt).
        progress: show progress bars (generation, scoring); they are quiet when stderr is not a terminal.
        **options: the model to generate from (``checkpoint`` or ``pretrained``, ``use_ema``, ``vocoder``),
            ``device`` (also the extractors'; auto: CUDA when available), ``dtype`` and the sampling options
            (see ``lightning_auffusion.diffusion.options``); a generated folder needs none of the model's.
    """
    from lightning_auffusion.diffusion.loading import resolve_device

    source, sampling = split_options(options)
    checkpoint = source.name
    device = resolve_device(source.device)
    if kl_unpaired not in ("report", "error"):
        raise UserInputError(f"kl_unpaired must be 'report' or 'error', got {kl_unpaired!r}")
    if checkpoint and ceiling_checkpoint:
        raise UserInputError("ceiling_checkpoint is for a generated folder; with a model the ceilings use that model")
    if attention_localisation and not checkpoint:
        raise UserInputError(
            "attention_localisation needs a model (checkpoint or pretrained): attention is recorded while generating"
        )
    captions = read_prompts(prompts) if prompts else {}
    out_dir = Path(output)
    module = localisation = None
    if checkpoint:
        if generated:
            raise UserInputError(
                "give either generated (a folder) or a model (checkpoint or pretrained, + prompts), not both"
            )
        if not captions:
            raise UserInputError("a model needs prompts: the prompt list to generate from")
        items = dict(list(captions.items())[:limit]) if limit else captions
        generated = str(out_dir / "generated")
        module = source.load()
        localisation = generate_folder(
            module,
            items,
            Path(generated),
            num_inference_steps=sampling.num_inference_steps,
            guidance_scale=sampling.guidance_scale,
            scheduler=sampling.scheduler,
            seed=sampling.seed,
            batch_size=batch_size,
            attention_localisation=attention_localisation,
            duration_seconds=sampling.duration_seconds,
            negative_prompt=sampling.negative_prompt,
            progress=progress,
        )
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
    stages = None
    if ceilings and not (module is not None or ceiling_checkpoint):
        log.info("no model given: the stage-ceiling rows are skipped (they render through its decoders)")
    elif ceilings and reference is None:
        log.warning("no reference given: the stage-ceiling rows are skipped (they render the reference clips)")

    suite = MetricSuite(
        selected,
        weights_dir=weights_dir,
        allow_random_weights=allow_random_weights,
        download=download_weights,
        device=str(device),
        batch_size=batch_size,
        clap_backend=clap_backend,
        kl_unpaired=kl_unpaired,
        alignment_loudness=alignment_loudness,
        keep_reference=True,
    )
    skipped: list[Skipped] = []
    gen_files = list_audio(generated, skipped)
    if limit:
        gen_files = dict(list(gen_files.items())[:limit])
    if not gen_files:
        raise UserInputError(f"no audio files in {generated}")
    ref_kind = None
    if reference is not None:
        ref_kind = "folder" if Path(reference).is_dir() and not is_shard_source(reference) else "shards"
        ref_files = list_audio(reference, skipped) if ref_kind == "folder" else None
    if ceilings and ref_kind is not None and (module is not None or ceiling_checkpoint):
        stages = StageCeilings(
            ceiling_pipeline(module if module is not None else load_ldm(ceiling_checkpoint, device)),
            cache=ceiling_cache,
            reference_key=reference_key(reference, ref_files),
        )
    if ref_kind is not None and any(m in selected for m in ("fd", "fad", "kl")):
        reference_clips = 0
        batches = reference_batches(reference, ref_files, batch_size, skipped)
        for batch in progress_bar(batches, enabled=progress, unit="batch", desc="reference features"):
            reference_clips += len(batch)
            suite.update(batch.clips, batch.rates, batch.ids, real=True)
        if not reference_clips:
            raise UserInputError(
                f"no usable reference audio in {reference}: FD, FAD and KL need reference clips "
                "(check the path, or leave out --reference to skip those metrics)"
            )

    rows = {
        GENERATED_ROW: score_row(
            suite,
            iter_folder(gen_files, batch_size, skipped),
            captions,
            progress_bar(enabled=progress, unit="batch", desc=GENERATED_ROW),
        )
    }
    if stages is not None:
        for row in stages.rows:
            rendered = stages.batches(row, reference_batches(reference, ref_files, batch_size, []), batch_size)
            rows[row] = score_row(suite, rendered, captions, progress_bar(enabled=progress, unit="batch", desc=row))
            log.info("scored the %s row (%s)", row, CEILING_ROWS[row])
    results, details, _, resampling = rows[GENERATED_ROW]
    if localisation is not None:
        results.update(localisation.results())
    report = build_report(
        results,
        details,
        {name: status.describe() for name, status in suite.statuses.items()},
        suite.random_weights,
        resampling,
        [{"source": s.source, "reason": s.reason} for s in skipped],
        {
            "generated": generated,
            "reference": reference,
            "reference_kind": ref_kind,
            "checkpoint": checkpoint,
            "ceiling_checkpoint": ceiling_checkpoint,
            "prompts": prompts,
            "metrics": selected,
        },
        rows={name: row[0] for name, row in rows.items()},
    )
    json_path, md_path = write_report(report, out_dir)
    with open(out_dir / "clips.jsonl", "w", encoding="utf-8") as fh:
        for name, row in rows.items():
            for record in row[2]:
                fh.write(json.dumps({"row": name, **record}) + "\n")
    if localisation is not None:
        from lightning_auffusion.attention.localisation import LOCALISATION_FILE

        (out_dir / LOCALISATION_FILE).write_text(json.dumps(localisation.summary, indent=2) + "\n", encoding="utf-8")
    print(markdown_report(report))
    log.info("wrote %s and %s", json_path, md_path)
    return report


def reference_batches(
    reference: str, files: dict[str, Path] | None, batch_size: int, skipped: list[Skipped]
) -> Iterator[Batch]:
    """Batches of the reference clips: from ``files`` (a folder's listing) or the shards of ``reference``."""
    return iter_folder(files, batch_size, skipped) if files is not None else iter_shards(reference, batch_size)


def score_row(
    suite: MetricSuite, batches: Iterable[Batch], captions: dict[str, str], bar=None
) -> tuple[dict, dict, list, dict]:
    """Feed one row's clips (with the caption of each id) to ``suite`` as generated audio, compute, and reset
    the suite for the next row (reference features are kept). Returns (results, details, records, resampling).
    ``bar`` (a tqdm bar, closed at the end) counts the batches."""
    for batch in batches:
        suite.update(batch.clips, batch.rates, batch.ids, [captions.get(i) for i in batch.ids], real=False)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    results = suite.compute()
    row = (results, dict(suite.details), list(suite.records), dict(suite.resampling))
    suite.reset()
    return row
