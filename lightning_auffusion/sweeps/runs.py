"""Collecting runs for the dashboard: sweep trial folders, plain run folders and W&B offline runs.

A *run folder* is one that holds ``trial.json`` (a sweep trial), ``metrics.json`` (an ``evaluate`` output) or a
W&B offline run (``wandb/offline-run-*/``, or the ``offline-run-*`` folder itself). A folder holding none of
these is searched one level down, so a sweep folder (``runs/<sweep>/``) gives all its trials.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_auffusion.callbacks.metrics_log import read_metrics_log
from lightning_auffusion.evaluation.report import BREAKDOWN, COLUMNS
from lightning_auffusion.sweeps.wandb_offline import read_offline_run

log = logging.getLogger(__name__)

LOWER_IS_BETTER = ("fd", "fad", "kl", "loss")


@dataclass
class Run:
    """What the dashboard knows of one run."""

    name: str
    folder: Path
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "unknown"
    error: str | None = None
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # metrics.json rows (generated, ceilings)
    comparable: bool | None = None  # real extractor weights (None: no report)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    media: list[dict[str, Any]] = field(default_factory=list)  # {prompt, wav, png, attention} (paths)

    @property
    def final(self) -> dict[str, Any]:
        """The generated row of the report, else the last value of each ``eval/`` curve."""
        if "generated" in self.rows:
            return self.rows["generated"]
        return {k[len("eval/") :]: v[-1][1] for k, v in self.curves.items() if k.startswith("eval/") and v}

    def best(self, key: str) -> tuple[float, int] | None:
        """(best value, its step) of curve ``eval/<key>`` (lower is better for FD, FAD, KL and losses)."""
        points = self.curves.get(f"eval/{key}") or self.curves.get(key)
        if not points:
            return None
        lower = any(key.split("/")[-1].startswith(m) for m in LOWER_IS_BETTER)
        step, value = (min if lower else max)(points, key=lambda p: p[1])
        return value, step


def is_run_folder(path: Path) -> bool:
    return (
        (path / "trial.json").is_file()
        or (path / "metrics.json").is_file()
        or _is_wandb_run(path)
        or any((path / "wandb").glob("offline-run-*"))
    )


def _is_wandb_run(path: Path) -> bool:
    return path.name.startswith(("offline-run-", "run-")) and any(path.glob("run-*.wandb"))


def find_run_folders(paths: list[str]) -> list[Path]:
    """The run folders named by ``paths`` (a folder that is not one is searched one level down)."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if not path.is_dir():
            raise FileNotFoundError(f"dashboard: {item!r} is not a folder (give sweep folders or run folders)")
        if is_run_folder(path):
            found.append(path)
            continue
        children = [c for c in sorted(path.iterdir()) if c.is_dir() and is_run_folder(c)]
        if not children:
            log.warning("dashboard: %s holds no run (trial.json, metrics.json or a W&B offline run); skipped", path)
        found.extend(children)
    return list(dict.fromkeys(found))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        log.warning("dashboard: %s unreadable (%s); skipped", path, err)
        return {}


def _media(folder: Path) -> list[dict[str, Any]]:
    """Per generated prompt: its WAV, spectrogram PNG and attention figure, from a ``prompts.jsonl``."""
    for manifest in (folder / "samples" / "prompts.jsonl", folder / "prompts.jsonl"):
        if manifest.is_file():
            items = []
            for line in manifest.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                wav = manifest.parent / str(record.get("wav", ""))
                if not wav.is_file():
                    continue
                attention = wav.with_name(wav.stem + "_attention.png")
                png = manifest.parent / str(record.get("png", "")) if record.get("png") else None
                items.append(
                    {
                        "prompt": record.get("prompt", wav.stem),
                        "wav": wav,
                        "png": png if png and png.is_file() else None,
                        "attention": attention if attention.is_file() else None,
                    }
                )
            return items
    return []


def read_run(folder: Path) -> Run:
    """A ``Run`` from one run folder (see the module docstring)."""
    folder = Path(folder)
    wandb_dirs = [folder] if _is_wandb_run(folder) else sorted((folder / "wandb").glob("offline-run-*"))
    run = Run(name=folder.name, folder=folder)
    status = _read_json(folder / "trial.json") if (folder / "trial.json").is_file() else {}
    if status:
        run.params, run.status, run.error = (
            dict(status.get("params") or {}),
            status.get("status", "unknown"),
            status.get("error"),
        )
    report = _read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    if report:
        run.rows = dict(report.get("rows") or {"generated": report.get("metrics", {})})
        run.comparable = bool(report.get("comparable_with_published"))
        if not status:
            run.status = "evaluated"
            model = (report.get("inputs") or {}).get("checkpoint")
            if model:  # evaluate's model: checkpoint or released layout, "+ LoRA <adapter>" when one was merged
                run.params = {"model": model}
    run.curves = read_metrics_log(folder / "metrics_log.jsonl")
    logged = set(run.curves)  # the metrics log wins; W&B history adds what it lacks (newest run last)
    for wandb_dir in wandb_dirs:
        offline = read_offline_run(wandb_dir)
        for key, points in offline["curves"].items():
            if key not in logged:
                run.curves[key] = sorted({**dict(run.curves.get(key, [])), **dict(points)}.items())
        if wandb_dir == folder:  # the folder is a bare W&B offline run
            run.name = offline.get("name") or f"wandb-{offline['id']}"
            run.params, run.status = dict(offline["config"]), "wandb run"
            summary = {
                k[len("eval/") :]: v
                for k, v in offline["summary"].items()
                if k.startswith("eval/") and isinstance(v, (int, float))
            }
            if summary and not run.rows:
                run.rows = {"generated": summary}
    run.media = _media(folder)
    return run


def varying_params(runs: list[Run]) -> list[str]:
    """Parameter keys whose values differ between runs (all of a single run's)."""
    keys = list(dict.fromkeys(k for r in runs for k in r.params))
    if len(runs) < 2:
        return keys
    return [k for k in keys if len({json.dumps(r.params.get(k), sort_keys=True, default=str) for r in runs}) > 1]


def metric_columns(runs: list[Run]) -> list[tuple[str, str, str]]:
    """The report's columns that some run has."""
    return [c for c in COLUMNS if any(c[1] in r.final for r in runs)]


def breakdown_columns(runs: list[Run]) -> list[tuple[str, str]]:
    return [c for c in BREAKDOWN if any(r.final.get(c[1]) is not None for r in runs)]
