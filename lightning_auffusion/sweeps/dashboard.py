"""The ``dashboard`` command: compare runs on one static HTML page and a Markdown summary.

``python -m lightning_auffusion dashboard --runs '["runs/quickstart_encoders"]' --output runs/quickstart_encoders/dashboard``
reads sweep folders or any run folders (sweep trials, ``evaluate`` outputs, W&B offline runs; see
``lightning_auffusion.sweeps.runs``) and writes ``<output>/index.html`` (opens from disk, no server) and
``<output>/summary.md``. The page has a sortable runs table (the parameters that differ, final metrics, the
best value of each metric over steps and its step), one bar chart per metric (the paper's Table 2 rows as
reference lines only when every run's report was made with the real extractor weights; the stage ceilings of
the runs as reference lines), the per-attribute alignment heat map, loss and metric curves over steps, and per
prompt every run's spectrogram, attention map and audio side by side. ``--wandb_project`` also logs the same
comparison as W&B Tables to a summary run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from lightning_auffusion.evaluation.report import (
    PUBLISHED_KEYS,
    PUBLISHED_TABLE2,
    ROW_DESCRIPTIONS,
)
from lightning_auffusion.sweeps import dashboard_html as H
from lightning_auffusion.sweeps.runs import (
    Run,
    breakdown_columns,
    find_run_folders,
    metric_columns,
    read_run,
    varying_params,
)

log = logging.getLogger(__name__)

CEILING_STYLE = {"ceiling_vocoder": "#555555", "ceiling_vae_vocoder": "#999999"}
CURVE_KEYS = ("train/loss", "val/loss")
RANDOM_NOTICE = (
    "Some reports were made with random extractor weights: their FD, FAD, KL, IS and CLAP only show "
    "that the pipeline runs and are not comparable with published numbers, so the paper's Table 2 "
    "rows are not drawn. The synthetic alignment accuracy does not depend on these weights."
)


def _colors(runs: list[Run]) -> dict[str, str]:
    return {r.name: H.PALETTE[i % len(H.PALETTE)] for i, r in enumerate(runs)}


def runs_table_rows(runs: list[Run]) -> tuple[list[str], list[str], list[list]]:
    """Column titles, column kinds (name, status, param, a metric's format, best) and rows (plain values) of
    the runs table, shared by the page, the Markdown summary and W&B."""
    params, cols = varying_params(runs), metric_columns(runs)
    curved = [c for c in cols if any(r.best(c[1]) for r in runs)]
    headers = ["run", "status", *params, *[c[0] for c in cols], *[f"best in-loop {c[0]} (step)" for c in curved]]
    kinds = ["name", "status", *["param"] * len(params), *[c[2] for c in cols], *["best"] * len(curved)]
    rows = []
    for r in runs:
        best = [r.best(c[1]) for c in curved]
        rows.append(
            [
                r.name,
                r.status + (f": {r.error}" if r.error else ""),
                *[r.params.get(p) for p in params],
                *[r.final.get(c[1]) for c in cols],
                *best,
            ]
        )
    return headers, kinds, rows


def _html_runs_table(runs: list[Run], colors: dict[str, str]) -> str:
    headers, kinds, rows = runs_table_rows(runs)
    body = []
    for run, row in zip(runs, rows):
        cells = []
        for kind, value in zip(kinds, row):
            if kind == "name":
                cells.append(
                    (f'<span class="swatch" style="background:{colors[run.name]}"></span> {H.esc(value)}', value, True)
                )
            elif kind == "status":
                cls = ' class="failed"' if run.status == "failed" else ""
                cells.append((f"<span{cls}>{H.esc(value)}</span>", value, True))
            elif kind == "param":
                cells.append((H.esc(H.short_param(value)), H.short_param(value), True))
            elif kind == "best":
                cells.append(
                    (
                        H.esc("n/a" if value is None else f"{H.fmt(value[0])} @ {value[1]}"),
                        "" if value is None else value[0],
                        False,
                    )
                )
            else:
                cells.append((H.esc(H.fmt(value, kind)), "" if value is None else value, False))
        body.append(cells)
    titles = [(h, k in ("name", "status", "param")) for h, k in zip(headers, kinds)]
    return H.table(titles, body, "runs")


def _references(runs: list[Run], key: str) -> list[tuple[str, float, str]]:
    refs = []
    with_value = [r for r in runs if isinstance(r.final.get(key), (int, float))]
    if key in PUBLISHED_KEYS and with_value and all(r.comparable for r in with_value):
        index = PUBLISHED_KEYS.index(key)
        for name, values in PUBLISHED_TABLE2:
            value = values[index] / 100.0 if key == "clap_score" else values[index]
            refs.append((f"paper: {name}", value, "#b22222"))
    for row, color in CEILING_STYLE.items():
        for r in runs:
            value = r.rows.get(row, {}).get(key)
            if isinstance(value, (int, float)):
                refs.append((f"{ROW_DESCRIPTIONS.get(row, row).split(':')[0]} {row} ({r.name})", float(value), color))
                break
    return refs


def _bar_charts(runs: list[Run], colors: dict[str, str]) -> str:
    charts = []
    for title, key, kind in metric_columns(runs):
        bars = [
            (r.name, float(r.final[key]), colors[r.name]) for r in runs if isinstance(r.final.get(key), (int, float))
        ]
        charts.append(H.bar_chart(title, bars, _references(runs, key), kind))
    return f'<div class="charts">{"".join(charts)}</div>' if charts else ""


def _heat_map(runs: list[Run]) -> str:
    cols = breakdown_columns(runs)
    if not cols:
        return ""
    rows = [
        [(H.esc(r.name), r.name, True), *[(H.heat_cell(r.final.get(k)), None, False) for _, k in cols]] for r in runs
    ]
    return H.table([("run", True), *[(t, False) for t, _ in cols]], rows, "alignment-heat-map")


def curve_keys(runs: list[Run]) -> list[str]:
    keys = [k for k in CURVE_KEYS if any(k in r.curves for r in runs)]
    from lightning_auffusion.evaluation.report import COLUMNS

    keys += [f"eval/{c[1]}" for c in COLUMNS if any(f"eval/{c[1]}" in r.curves for r in runs)]
    return keys


def _curves(runs: list[Run], colors: dict[str, str]) -> str:
    charts = [H.line_chart(k, [(r.name, colors[r.name], r.curves.get(k, [])) for r in runs]) for k in curve_keys(runs)]
    return f'<div class="charts">{"".join(charts)}</div>' if charts else ""


def prompts_by_run(runs: list[Run], colors: dict[str, str]) -> dict[str, list[tuple[str, str, dict]]]:
    grouped: dict[str, list[tuple[str, str, dict]]] = {}
    for r in runs:
        for item in r.media:
            grouped.setdefault(str(item["prompt"]), []).append((r.name, colors[r.name], item))
    return grouped


def markdown_summary(runs: list[Run], title: str) -> str:
    headers, kinds, rows = runs_table_rows(runs)
    cols = metric_columns(runs)

    def cell(kind, value):
        if kind == "param":
            return H.short_param(value)
        if kind == "best":
            return "n/a" if value is None else f"{H.fmt(value[0])} @ {value[1]}"
        return str(value) if kind in ("name", "status") else H.fmt(value, kind)

    lines = [
        f"# {title}",
        "",
        f"{len(runs)} runs. Open `index.html` beside this file for charts, curves and media.",
        "",
    ]
    if any(r.comparable is False for r in runs):
        lines += [f"> {RANDOM_NOTICE}", ""]
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(k, v).replace("|", "/") for k, v in zip(kinds, row)) + " |" for row in rows]
    bcols = breakdown_columns(runs)
    if bcols:
        lines += [
            "",
            "Alignment by attribute, event position and number of events:",
            "",
            "| run | " + " | ".join(t for t, _ in bcols) + " |",
            "|---|" + "---|" * len(bcols),
        ]
        lines += [f"| {r.name} | " + " | ".join(H.fmt(r.final.get(k), "pct") for _, k in bcols) + " |" for r in runs]
    if runs and all(r.comparable for r in runs if r.rows) and any(c[1] in PUBLISHED_KEYS for c in cols):
        lines += [
            "",
            "The paper's Table 2 (AudioCaps test; comparable only on the same test set):",
            "",
            "| model | FD | FAD | KL | IS | CLAP |",
            "|---|---|---|---|---|---|",
        ]
        lines += [f"| {n} | {v[0]} | {v[1]} | {v[2]} | {v[3]} | {v[4]}% |" for n, v in PUBLISHED_TABLE2]
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        lines += ["", "Failed runs:", ""] + [f"- {r.name}: {r.error}" for r in failed]
    media = sum(len(r.media) for r in runs)
    lines += [
        "",
        f"Media: {media} generated clips with spectrograms/attention maps over {len(prompts_by_run(runs, _colors(runs)))} prompts.",
    ]
    return "\n".join(lines) + "\n"


def log_wandb_tables(runs: list[Run], project: str, name: str, entity: str | None = None) -> None:
    """The comparison as W&B Tables in one summary run: runs, alignment breakdown, media per prompt and run."""
    import wandb

    run = wandb.init(project=project, entity=entity, name=name, job_type="dashboard")
    headers, _, rows = runs_table_rows(runs)
    plain = [[H.short_param(v) if isinstance(v, (list, dict, tuple)) else v for v in row] for row in rows]
    tables = {"dashboard/runs": wandb.Table(columns=headers, data=plain)}
    bcols = breakdown_columns(runs)
    if bcols:
        tables["dashboard/alignment"] = wandb.Table(
            columns=["run", *[t for t, _ in bcols]], data=[[r.name, *[r.final.get(k) for _, k in bcols]] for r in runs]
        )
    media = []
    for prompt, cards in prompts_by_run(runs, _colors(runs)).items():
        for run_name, _, item in cards:
            media.append(
                [
                    prompt,
                    run_name,
                    wandb.Audio(str(item["wav"])),
                    wandb.Image(str(item["png"])) if item.get("png") else None,
                    wandb.Image(str(item["attention"])) if item.get("attention") else None,
                ]
            )
    if media:
        tables["dashboard/media"] = wandb.Table(
            columns=["prompt", "run", "audio", "spectrogram", "attention"], data=media
        )
    run.log(tables)
    run.finish()


def dashboard(
    runs: list[str],
    output: str = "dashboard",
    title: str | None = None,
    media: Literal["embed", "copy"] = "embed",
    compact_media: bool = False,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
) -> str:
    """Write ``<output>/index.html`` and ``<output>/summary.md`` comparing runs; returns the page's path.

    Args:
        runs: Sweep folders (``runs/<sweep>``) or run folders: sweep trials, ``evaluate`` outputs, W&B offline
            runs (``.../wandb/offline-run-*``).
        output: Folder for the page and the summary (created; nothing is written outside it).
        title: Page title (default: the first folder's name).
        media: ``embed`` (audio and images inside the page as data URIs: one file to share) or ``copy``
            (into ``<output>/media/``, linked relatively: a smaller page).
        compact_media: re-encode the media for the page (images as JPEG, audio as Ogg Vorbis), several times
            smaller: for a page to commit or send. The run folders keep the original files.
        wandb_project: Also log the comparison as W&B Tables to a summary run in this project.
        wandb_entity: W&B entity of that project.
    """
    try:
        folders = find_run_folders(list(runs))
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    if not folders:
        raise SystemExit(f"dashboard: no runs found in {list(runs)}")
    collected = [read_run(f) for f in folders]
    names = [r.name for r in collected]
    for r in collected:  # same trial names from two sweeps: keep them apart
        if names.count(r.name) > 1:
            r.name = f"{r.folder.parent.name}/{r.name}"
    title = title or f"Runs: {Path(runs[0]).name}"
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    colors = _colors(collected)
    link = H.MediaWriter(out, media, compact_media)
    notices = [RANDOM_NOTICE] if any(r.comparable is False for r in collected) else []
    notices += [f"{r.name} failed: {r.error}" for r in collected if r.status == "failed"]
    sections = [
        ("runs", _html_runs_table(collected, colors)),
        ("metrics", _bar_charts(collected, colors)),
        ("alignment-by-attribute", _heat_map(collected)),
        ("curves", _curves(collected, colors)),
        ("samples", H.media_section(prompts_by_run(collected, colors), link)),
    ]
    page = out / "index.html"
    page.write_text(H.page(title, sections, notices), encoding="utf-8")
    (out / "summary.md").write_text(markdown_summary(collected, title), encoding="utf-8")
    if wandb_project:
        log_wandb_tables(collected, wandb_project, f"dashboard-{H.esc(Path(runs[0]).name)}", wandb_entity)
    print(f"wrote {page} and {out / 'summary.md'} ({len(collected)} runs)")
    return str(page)
