"""Evaluation reports: a JSON document and a Markdown table in the paper's column order (FD, FAD, KL, IS, CLAP),
followed by the synthetic alignment accuracy, with plain-words notes on weights, pairing and resampling."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# (column title, result key, format): the paper's order, then the project's offline metric
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("FD", "fd", "{:.2f}"),
    ("FAD", "fad", "{:.2f}"),
    ("KL", "kl", "{:.2f}"),
    ("IS", "is_mean", "{:.2f}"),
    ("CLAP", "clap_score", "pct"),
    ("Alignment acc.", "alignment_accuracy", "pct"),
    ("Clips all correct", "alignment_clip_accuracy", "pct"),
    ("Attention loc.", "attention_localisation", "pct"),
)

# the alignment broken down: (column title, result key); judged counts sit under the same key with _judged/_clips
BREAKDOWN: tuple[tuple[str, str], ...] = (
    ("source", "alignment_source_accuracy"),
    ("pitch", "alignment_pitch_accuracy"),
    ("pattern", "alignment_pattern_accuracy"),
    ("loudness", "alignment_loudness_accuracy"),
    ("event 0", "alignment_event0_accuracy"),
    ("event 1", "alignment_event1_accuracy"),
    ("event 2", "alignment_event2_accuracy"),
    ("1-event clips", "alignment_events1_clip_accuracy"),
    ("2-event clips", "alignment_events2_clip_accuracy"),
    ("3-event clips", "alignment_events3_clip_accuracy"),
)

ROW_DESCRIPTIONS: dict[str, str] = {
    "generated": "generated from the prompts",
    "ceiling_vocoder": "stage ceiling: reference -> log-mel -> vocoder",
    "ceiling_vae_vocoder": "stage ceiling: reference -> log-mel -> image -> VAE -> image -> log-mel -> vocoder",
}

PUBLISHED_AUDIOCAPS: tuple[tuple[str, tuple[float, float, float, float, float]], ...] = (
    ("Auffusion (AC only)", (21.99, 1.63, 1.36, 10.57, 55.3)),
    ("Auffusion-Full, CLAP", (21.92, 1.57, 1.35, 10.01, 58.3)),
    ("Tango", (24.82, 1.77, 1.43, 7.20, 55.0)),
    ("AudioLDM2-large", (25.59, 2.19, 1.70, 7.83, 47.9)),
)

# the paper's Table 2 (text-encoder ablation, AudioCaps test): FD, FAD, KL, IS, CLAP %
PUBLISHED_TABLE2: tuple[tuple[str, tuple[float, float, float, float, float]], ...] = (
    ("Auffusion (AC only)", (21.99, 1.63, 1.36, 10.57, 55.3)),
    ("Auffusion-Full, CLIP", (23.08, 1.76, 1.36, 10.28, 55.6)),
    ("Auffusion-Full, CLAP", (21.92, 1.57, 1.35, 10.01, 58.3)),
    ("Auffusion-Full, Flan-T5-large", (22.31, 1.41, 1.42, 9.37, 54.6)),
    ("Auffusion-Full, CLAP + Flan-T5-large", (22.55, 1.50, 1.32, 10.34, 57.4)),
)
PUBLISHED_KEYS = ("fd", "fad", "kl", "is_mean", "clap_score")  # the result keys of the five published columns

RANDOM_WEIGHTS_NOTICE = (
    "NOT COMPARABLE WITH PUBLISHED NUMBERS: {names} ran with random weights because their pretrained weight "
    "files were not found. FD, FAD, KL, IS and CLAP below only show that the pipeline runs; the synthetic "
    "alignment accuracy does not depend on these weights."
)


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if fmt == "pct":
        return f"{100.0 * value:.1f}%"
    return fmt.format(value)


def _judged_key(key: str) -> str:
    return (
        key.replace("_clip_accuracy", "_clips")
        if key.endswith("_clip_accuracy")
        else key.replace("_accuracy", "_judged")
    )


def breakdown_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines of the alignment broken down per attribute, event position and event count, one line
    per row; a cell shows the accuracy and how many were judged. Empty when no row has the breakdown."""
    cols = [(title, key) for title, key in BREAKDOWN if any(m.get(_judged_key(key)) for m in rows.values())]
    if not cols:
        return []
    lines = ["| run | " + " | ".join(title for title, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for name, metrics in rows.items():
        cells = [f"{_cell(metrics.get(key), 'pct')} ({metrics.get(_judged_key(key), 0)})" for _, key in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def markdown_report(report: dict[str, Any], label: str = "generated") -> str:
    """The Markdown page of a report made by ``build_report``: one table line per row (generated, then the
    stage ceilings), the alignment breakdown, published numbers when comparable, and the notes."""
    metrics = report["metrics"]
    rows = {label: metrics, **{k: v for k, v in report.get("rows", {}).items() if k != "generated"}}
    cols = [c for c in COLUMNS if any(c[1] in m for m in rows.values())]
    lines = ["# Objective evaluation", ""]
    if not report["comparable_with_published"]:
        lines += [f"> **{report['notice']}**", ""]
    lines += ["| run | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for name, values in rows.items():
        row = [_cell(values.get(key), fmt) for _, key, fmt in cols]
        if "is_mean" in values and values.get("is_std") is not None and values.get("is_mean") is not None:
            row[[c[1] for c in cols].index("is_mean")] += f" ± {values['is_std']:.2f}"
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    if len(rows) > 1:
        lines += [""] + [f"- {name}: {ROW_DESCRIPTIONS.get(name, name)}" for name in rows if name != label]
    breakdown = breakdown_table(rows)
    if breakdown:
        title = (
            "Alignment by attribute, event position (0 = first) and number of events "
            "(accuracy, judged count; order and count are judged through the positions):"
        )
        lines += ["", title, "", *breakdown]
    if report["comparable_with_published"] and any(c[1] == "fd" for c in cols):
        lines += [
            "",
            "Published (AudioCaps test, from the papers; only comparable on the same test set):",
            "",
            "| model | FD | FAD | KL | IS | CLAP |",
            "|---|---|---|---|---|---|",
        ]
        for name, (fd, fad, kl, is_, clap) in PUBLISHED_AUDIOCAPS:
            lines.append(f"| {name} | {fd} | {fad} | {kl} | {is_} | {clap}% |")
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def build_report(
    metrics: dict[str, Any],
    details: dict[str, Any],
    weights: dict[str, str],
    random_weights: list[str],
    resampling: dict[str, int],
    skipped: list[dict[str, str]],
    inputs: dict[str, Any],
    rows: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON-ready report: metrics (the generated row), every row (``rows``: generated and the stage
    ceilings, each a metrics dict), whether they compare with published ones, and notes in plain words."""
    comparable = not random_weights
    notes: list[str] = []
    notice = RANDOM_WEIGHTS_NOTICE.format(names=", ".join(random_weights)) if random_weights else ""
    for text in weights.values():
        notes.append(f"Extractor {text}.")
    counted = f"{metrics.get('generated', 0)} generated clips"
    if metrics.get("reference"):  # read by the reference-based metrics (FD, FAD, KL)
        counted += f", {metrics['reference']} reference clips"
    notes.append(counted + ".")
    if "kl_pairing" in details:
        notes.append(f"KL pairs clips by file name: {details['kl_pairing']['summary']}.")
    if details.get("is_splits") not in (None, 10) and "is_mean" in metrics:
        notes.append(f"IS used {details['is_splits']} splits (fewer clips than 10), not the standard 10.")
    if "alignment_accuracy" in metrics:
        notes.append(
            f"Alignment: {metrics.get('alignment_attributes_judged', 0)} attributes judged; "
            f"{metrics.get('alignment_unparseable', 0)} prompts are not synthetic-grammar captions."
        )
    if metrics.get("uncaptioned"):
        notes.append(f"{metrics['uncaptioned']} generated clips have no prompt: no CLAP score or alignment for them.")
    for what, count in sorted(resampling.items()):
        notes.append(f"Resampled {count} clips ({what}).")
    if not resampling and weights:  # only extractors resample
        notes.append("No resampling was needed (every clip was already at each extractor's rate).")
    for name, reason in details.get("errors", {}).items():
        notes.append(f"{name} not computed: {reason}")
    if skipped:
        shown = "; ".join(f"{s['source']} ({s['reason']})" for s in skipped[:10])
        notes.append(f"{len(skipped)} files skipped: {shown}")
    rows = dict(rows) if rows else {"generated": metrics}
    for name in rows:
        if name != "generated":
            notes.append(f"Row {name}: {ROW_DESCRIPTIONS.get(name, name)}, scored with the same metrics.")
    if metrics.get("attention_localisation_tokens"):
        notes.append(
            f"Attention localisation over {int(metrics['attention_localisation_tokens'])} content tokens of "
            f"{int(metrics['attention_localisation_prompts'])} multi-event prompts; chance "
            f"{_cell(metrics.get('attention_localisation_chance'), 'pct')}."
        )
    return {
        "metrics": metrics,
        "rows": rows,
        "comparable_with_published": comparable,
        "notice": notice,
        "random_weights": random_weights,
        "weights": weights,
        "notes": notes,
        "details": details,
        "resampling": dict(resampling),
        "skipped": skipped,
        "inputs": inputs,
    }


def write_report(report: dict[str, Any], output: str | Path, label: str = "generated") -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.md`` into ``output``; returns their paths."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "metrics.json", out / "metrics.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    md_path.write_text(markdown_report(report, label), encoding="utf-8")
    return json_path, md_path
