"""Running a sweep's trials locally, one after another, each through the project's own commands.

A trial is ``fit`` (skipped for an evaluation-time sweep of one ``--checkpoint``), then ``generate`` of the
sweep's ``media`` prompts (spectrograms, attention maps, audio for the dashboard), then ``evaluate``; each is
``python -m lightning_auffusion <command> --config <file>`` in a subprocess, so a crash or an out-of-memory
kill loses that trial only. Everything a trial writes goes under ``<output>/<sweep>/<trial>/``:

==========================  =======================================================================
``trial.json``              parameters, status (running, done, failed), finished stages, error
``trial_config.yaml``       the base config with the trial's parameters and the redirected paths
``config.yaml``             the fully resolved config LightningCLI saved for the fit
``checkpoints/last.ckpt``   the resume point; ``metrics_log.jsonl`` the scalars over steps
``wandb/``                  the trial's (offline) W&B run, when the base config has a ``WandbLogger``
``samples/``                media: ``<i>_<slug>.wav/.png/_attention.png`` and ``prompts.jsonl``
``fit_samples/``            what the base config's sample-logging callbacks write during the fit
``metrics.json``            the ``evaluate`` report (``metrics.md``, ``clips.jsonl``, ``generated/`` beside it)
``<stage>.log``             each command's output
==========================  =======================================================================

The stage-ceiling rows render the reference through the decoders, which trials usually share: every trial's
``evaluate`` keeps them in ``<output>/<sweep>/ceiling_cache/`` (keyed by a digest of the decoders and the
reference), so each row is rendered once per sweep.

Re-running the sweep skips trials whose status is ``done``; an interrupted trial restarts at its first
unfinished stage, a fit from its ``last.ckpt`` (``--ckpt_path``). A failed stage marks the trial ``failed``
with the error's last line and the log's tail, and the sweep goes on; a re-run retries failed trials.
"""

from __future__ import annotations

import copy
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from lightning_auffusion.sweeps.spec import (
    SweepError,
    SweepSpec,
    Trial,
    apply_params,
    load_config_files,
    sanitize,
)

log = logging.getLogger(__name__)

STATUS_FILE = "trial.json"
SWEEP_FILE = "sweep.json"
METRICS_LOG = "metrics_log.jsonl"
CHECKPOINT_CLASS = "lightning.pytorch.callbacks.ModelCheckpoint"
METRICS_LOG_CLASS = "lightning_auffusion.callbacks.metrics_log.MetricsLogCallback"
SAMPLING_KEYS = ("num_inference_steps", "guidance_scale", "scheduler", "seed")
STAGES = ("fit", "media", "evaluate")
CEILING_CACHE = "ceiling_cache"  # the sweep folder's store of rendered stage-ceiling clips (evaluate --ceiling_cache)
# callback options that name where they write: redirected into these folders of the trial (a logger's
# save_dir becomes the trial folder itself)
OUTPUT_OPTIONS = {"dirpath": "checkpoints", "save_dir": "fit_samples", "output_dir": "fit_samples"}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the command dies when the sweep process does (kill -9 of the sweep leaves no orphan fit)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_command(argv: list[str], log_path: Path) -> int:
    """``python -m lightning_auffusion <argv>`` in a subprocess, its output into ``log_path``; the exit code."""
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(f"$ python -m lightning_auffusion {' '.join(argv)}\n")
        fh.flush()
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        return subprocess.run(
            [sys.executable, "-m", "lightning_auffusion", *argv],
            stdout=fh,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
            check=False,
        ).returncode


def error_line(log_path: Path, tail: int = 30) -> tuple[str, str]:
    """(the error's one line, the log's last ``tail`` lines) of a failed command."""
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines() if log_path.is_file() else []
    errors = [ln for ln in lines if ln.strip() and (ln.startswith(("ERROR", "error:")) or "Error" in ln.split(":")[0])]
    summary = (errors or [ln for ln in lines if ln.strip()] or ["no output"])[-1].strip()
    return summary, "\n".join(lines[-tail:])


# ------------------------------------------------------------------------------------------ trial configs
def _class_name(item: Any) -> str:
    return str(item.get("class_path", "")) if isinstance(item, dict) else ""


def _redirect_outputs(item: dict[str, Any], trial_dir: Path, logger: bool = False) -> dict[str, Any]:
    args = dict(item.get("init_args") or {})
    for option, sub in OUTPUT_OPTIONS.items():
        if option in args:
            args[option] = str(trial_dir) if logger else str(trial_dir / sub)
    return {**item, "init_args": args}


def fit_config(
    config: dict[str, Any],
    trial_dir: Path,
    sweep_name: str,
    trial_name: str,
    logger_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The trial's fit config: every output path of the base config moved into ``trial_dir``, a checkpoint
    with ``last.ckpt`` ensured (the resume point), the W&B logger named after the trial and grouped by sweep,
    and the ``MetricsLogCallback`` added."""
    config = copy.deepcopy(config)
    trainer = dict(config.get("trainer") or {})
    trainer["default_root_dir"] = str(trial_dir)
    trainer["enable_checkpointing"] = True
    logger = trainer.get("logger")
    if isinstance(logger, (dict, list)):
        loggers = []
        for item in logger if isinstance(logger, list) else [logger]:
            item = _redirect_outputs(item, trial_dir, logger=True) if isinstance(item, dict) else item
            if _class_name(item).endswith("WandbLogger"):
                item["init_args"].update(
                    {"name": trial_name, "group": sweep_name, "save_dir": str(trial_dir), **(logger_overrides or {})}
                )
            loggers.append(item)
        trainer["logger"] = loggers if isinstance(logger, list) else loggers[0]
    callbacks = trainer.get("callbacks") or []
    callbacks = [callbacks] if isinstance(callbacks, dict) else list(callbacks)
    callbacks = [
        _redirect_outputs(c, trial_dir) if isinstance(c, dict) else c
        for c in callbacks
        if _class_name(c) != METRICS_LOG_CLASS
    ]
    checkpoints = [c for c in callbacks if _class_name(c).endswith("ModelCheckpoint")]
    if not checkpoints:
        callbacks.append({"class_path": CHECKPOINT_CLASS, "init_args": {}})
        checkpoints = callbacks[-1:]
    for c in checkpoints:
        c["init_args"].update({"dirpath": str(trial_dir / "checkpoints"), "save_last": True})
    callbacks.append({"class_path": METRICS_LOG_CLASS, "init_args": {"path": str(trial_dir / METRICS_LOG)}})
    trainer["callbacks"] = callbacks
    config["trainer"] = trainer
    return config


def split_trial(base: dict[str, Any], spec: SweepSpec, trial: Trial) -> tuple[dict, dict, dict]:
    """(fit config, evaluate options, media options) of a trial: the base config plus the sweep's
    ``evaluate`` and ``media`` blocks, with the trial's dotted-path parameters applied to the whole."""
    tree = {**copy.deepcopy(base), "evaluate": copy.deepcopy(spec.evaluate), "media": copy.deepcopy(spec.media)}
    tree = apply_params(tree, trial.params)
    evaluate, media = tree.pop("evaluate") or {}, tree.pop("media") or {}
    return tree, evaluate, media


# ------------------------------------------------------------------------------------------ status
def read_status(trial_dir: Path) -> dict[str, Any]:
    path = trial_dir / STATUS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        log.warning("%s is unreadable: the trial starts again", path)
        return {}


def write_status(trial_dir: Path, status: dict[str, Any]) -> None:
    tmp = trial_dir / (STATUS_FILE + ".tmp")
    tmp.write_text(json.dumps(status, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, trial_dir / STATUS_FILE)


def _write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ one trial
class TrialRunner:
    """Runs one trial's stages in its folder, resuming where a previous attempt stopped.

    ``command`` runs one project command (default: a subprocess, :func:`run_command`); tests pass an
    in-process stand-in.
    """

    def __init__(
        self,
        spec: SweepSpec,
        base: dict[str, Any],
        root: Path,
        checkpoint: str | None = None,
        command: Callable[[list[str], Path], int] | None = None,
    ) -> None:
        self.spec, self.base, self.root, self.checkpoint = spec, base, root, checkpoint
        self.command = command

    def stages(self, evaluate: dict, media: dict) -> list[str]:
        wanted = [] if self.checkpoint else ["fit"]
        if media.get("prompts") or media.get("prompt_file"):
            wanted.append("media")
        if evaluate:
            wanted.append("evaluate")
        return wanted

    def run(self, trial: Trial, logger_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        trial_dir = self.root / trial.name
        trial_dir.mkdir(parents=True, exist_ok=True)
        status = read_status(trial_dir)
        if status.get("status") == "done":
            log.info("trial %s: done already, skipped", trial.name)
            return status
        fit, evaluate, media = split_trial(self.base, self.spec, trial)
        status = {
            "name": trial.name,
            "index": trial.index,
            "params": trial.params,
            "status": "running",
            "stages_done": [s for s in status.get("stages_done", [])],
            "attempts": status.get("attempts", 0) + 1,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "error": None,
        }
        write_status(trial_dir, status)
        checkpoint = self.checkpoint or str(trial_dir / "checkpoints" / "last.ckpt")
        for stage in self.stages(evaluate, media):
            if stage in status["stages_done"]:
                continue
            log.info("trial %s: %s", trial.name, stage)
            if stage == "fit":
                argv = self._fit_argv(trial_dir, fit, trial.name, logger_overrides)
            elif stage == "media":
                argv = self._media_argv(trial_dir, media, evaluate, checkpoint)
            else:
                argv = self._evaluate_argv(trial_dir, evaluate, checkpoint)
            code = (self.command or run_command)(argv, trial_dir / f"{stage}.log")
            if code != 0:
                summary, tail = error_line(trial_dir / f"{stage}.log")
                status.update(
                    status="failed",
                    failed_stage=stage,
                    error=f"{stage} exited with {code}: {summary}",
                    log_tail=tail,
                    finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                )
                write_status(trial_dir, status)
                log.error("trial %s failed in %s: %s (see %s)", trial.name, stage, summary, trial_dir / f"{stage}.log")
                return status
            status["stages_done"].append(stage)
            write_status(trial_dir, status)
        status.update(status="done", finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
        status.pop("log_tail", None)
        status.pop("failed_stage", None)
        write_status(trial_dir, status)
        return status

    def _fit_argv(self, trial_dir: Path, fit: dict, name: str, logger_overrides: dict | None) -> list[str]:
        config = fit_config(fit, trial_dir, self.spec.name, name, logger_overrides)
        path = _write_yaml(trial_dir / "trial_config.yaml", config)
        argv = ["fit", "--config", str(path)]
        last = trial_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            log.info("trial %s: resuming fit from %s", name, last)
            argv += ["--ckpt_path", str(last)]
        return argv

    def _media_argv(self, trial_dir: Path, media: dict, evaluate: dict, checkpoint: str) -> list[str]:
        options = {
            "attention_maps": True,
            **{k: evaluate[k] for k in SAMPLING_KEYS if k in evaluate},
            **media,
            "checkpoint": checkpoint,
            "output_dir": str(trial_dir / "samples"),
        }
        options.setdefault("device", evaluate.get("device", "auto"))
        return ["generate", "--config", str(_write_yaml(trial_dir / "media.yaml", options))]

    def _evaluate_argv(self, trial_dir: Path, evaluate: dict, checkpoint: str) -> list[str]:
        options = {**evaluate, "checkpoint": checkpoint, "output": str(trial_dir)}
        if options.get("ceilings", True):  # the trials share the decoders: each ceiling row is rendered once
            options.setdefault("ceiling_cache", str(self.root / CEILING_CACHE))
        return ["evaluate", "--config", str(_write_yaml(trial_dir / "evaluate.yaml", options))]


def check_trials(spec: SweepSpec, trials: list[Trial], checkpoint: str | None, base: list[str]) -> None:
    """Refuse, in one line, what cannot run: an evaluation-time sweep over training parameters, or a
    training sweep without a base config."""
    if checkpoint:
        wrong = sorted({k for t in trials for k in t.params if k.split(".")[0] not in ("evaluate", "media")})
        if wrong:
            raise SweepError(
                f"--checkpoint sweeps sampling only (evaluate.* / media.* parameters); {wrong} need training"
            )
        if not spec.evaluate and not any(k.split(".")[0] == "evaluate" for t in trials for k in t.params):
            raise SweepError("an evaluation-time sweep needs an 'evaluate' block (prompts, reference, metrics)")
        if not Path(checkpoint).is_file():
            raise SweepError(f"checkpoint {checkpoint!r} not found")
    elif not base:
        raise SweepError("no base config: give 'base:' in the sweep file or --base conf/<x>.yaml")
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        raise SweepError("two trials got the same folder name; shorten or distinguish the parameter values")


def run_local(
    spec: SweepSpec,
    trials: list[Trial],
    base: list[str],
    root: Path,
    checkpoint: str | None = None,
    command: Callable[[list[str], Path], int] | None = None,
) -> list[dict[str, Any]]:
    """Run ``trials`` in turn under ``root``; returns each trial's final status."""
    runner = TrialRunner(spec, load_config_files(base) if not checkpoint else {}, root, checkpoint, command)
    root.mkdir(parents=True, exist_ok=True)
    summary_path = root / SWEEP_FILE
    results = []
    for trial in trials:
        results.append(runner.run(trial))
        summary = {
            "name": spec.name,
            "method": spec.method,
            "base": base,
            "checkpoint": checkpoint,
            "trials": [{k: r.get(k) for k in ("name", "index", "status", "error", "params")} for r in results],
        }
        summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return results


def sweep_root(spec: SweepSpec, output: str | None) -> Path:
    return Path(output or spec.output) / sanitize(spec.name)
