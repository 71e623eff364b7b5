"""The ``sweep`` command: one sweep file (W&B's sweep YAML), run locally in turn or under W&B's agent.

``python -m lightning_auffusion sweep --sweep conf/sweeps/quickstart_encoders.yaml`` runs every trial's
fit, media and evaluation into ``runs/<sweep>/<trial>/`` (see ``lightning_auffusion.sweeps.runner``);
``--dry_run true`` lists the trials; ``--checkpoint last.ckpt`` sweeps sampling parameters of one model
through ``evaluate`` without training. ``--backend wandb`` hands the same file to W&B's own sweep controller
(``wandb.sweep``) and runs trials under ``wandb.agent`` with :func:`make_trial_function`; start one such
command (or ``--sweep_id <id>``) per GPU or node.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from lightning_auffusion.sweeps.runner import (
    TrialRunner,
    check_trials,
    run_local,
    sweep_root,
)
from lightning_auffusion.sweeps.spec import (
    SweepError,
    SweepSpec,
    Trial,
    expand,
    load_config_files,
    load_spec,
    sanitize,
    wandb_sweep_config,
)

log = logging.getLogger(__name__)


def describe(trials: list[Trial], root: Path) -> str:
    """The dry-run listing: one line per trial with its folder and parameters."""
    lines = [f"{len(trials)} trials under {root}/"]
    for t in trials:
        params = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in t.params.items())
        lines.append(f"  {t.name}: {params}")
    return "\n".join(lines)


def make_trial_function(
    spec: SweepSpec,
    base: list[str],
    output: str | None,
    checkpoint: str | None = None,
    command: Callable[[list[str], Path], int] | None = None,
) -> Callable[[], dict]:
    """The function ``wandb.agent`` calls once per trial.

    It opens the agent's run (``wandb.init()`` gets the controller's parameter values in ``wandb.config``),
    closes it so that the trial's fit can log into the same run (its ``WandbLogger`` resumes the run id),
    runs the trial like the local backend (folder ``<output>/<sweep>/<run id>``), then reopens the run to
    put the evaluation metrics in its summary."""
    import wandb

    root = sweep_root(spec, output)
    runner = TrialRunner(spec, load_config_files(base) if not checkpoint else {}, root, checkpoint, command)

    def trial_function() -> dict:
        run = wandb.init()
        params = {k: v for k, v in dict(run.config).items() if not str(k).startswith("_")}
        run_id, project, entity = run.id, getattr(run, "project", None), getattr(run, "entity", None)
        trial = Trial(index=-1, name=sanitize(f"{run_id}"), params=params)
        check_trials(spec, [trial], checkpoint, base)
        run.finish()
        overrides = {"id": run_id, "resume": "allow", "offline": False, "project": project}
        if entity:
            overrides["entity"] = entity
        status = runner.run(trial, logger_overrides=overrides)
        summary = _final_metrics(root / trial.name)
        run = wandb.init(id=run_id, project=project, entity=entity, resume="allow")
        run.summary.update({**summary, "trial/status": status.get("status"), "trial/error": status.get("error")})
        run.finish(exit_code=0 if status.get("status") == "done" else 1)
        return status

    return trial_function


def _final_metrics(trial_dir: Path) -> dict[str, Any]:
    """The generated row of the trial's ``metrics.json`` as ``eval/<metric>`` scalars (empty without one)."""
    path = trial_dir / "metrics.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text(encoding="utf-8")).get("metrics", {})
    return {f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}


def run_wandb(
    spec: SweepSpec,
    base: list[str],
    output: str | None,
    checkpoint: str | None,
    count: int | None,
    project: str | None,
    entity: str | None,
    sweep_id: str | None,
) -> str:
    """Register the sweep with W&B's controller (unless ``sweep_id`` joins an existing one) and run an agent."""
    import wandb

    project = project or spec.raw.get("project") or "lightning_auffusion"
    entity = entity or spec.raw.get("entity")
    if sweep_id is None:
        sweep_id = wandb.sweep(wandb_sweep_config(spec), project=project, entity=entity)
        log.info(
            "registered W&B sweep %s; more agents: python -m lightning_auffusion sweep --sweep ... "
            "--backend wandb --sweep_id %s",
            sweep_id,
            sweep_id,
        )
    wandb.agent(
        sweep_id,
        function=make_trial_function(spec, base, output, checkpoint),
        count=count,
        project=project,
        entity=entity,
    )
    return sweep_id


def sweep(
    sweep: str,
    base: list[str] | str | None = None,
    output: str | None = None,
    dry_run: bool = False,
    backend: Literal["local", "wandb"] = "local",
    checkpoint: str | None = None,
    count: int | None = None,
    project: str | None = None,
    entity: str | None = None,
    sweep_id: str | None = None,
) -> list[dict] | str:
    """Run a sweep file (W&B's sweep YAML; parameters keyed by dotted config paths).

    Args:
        sweep: The sweep file, e.g. conf/sweeps/quickstart_encoders.yaml.
        base: Base config file of every trial (or a list of files, merged in order), replacing the file's
            ``base:``.
        output: Root folder of the trials (default: the file's ``output:``, else ``runs``); trial folders are
            ``<output>/<sweep name>/<trial>/``.
        dry_run: List the trials and their folders, run nothing.
        backend: ``local`` (trials in turn on this machine; resumable) or ``wandb`` (W&B's sweep controller
            and agent; needs a W&B server and login).
        checkpoint: An ``AuffusionLDM`` checkpoint: no training, every trial is ``evaluate`` of this model with
            the trial's ``evaluate.*`` (sampling) parameters.
        count: Trials to run: for random search the number of draws (default the file's ``run_cap``); for the
            W&B agent the number of trials it runs before exiting.
        project: W&B project (default the file's ``project``, else lightning_auffusion).
        entity: W&B entity.
        sweep_id: Join this registered W&B sweep instead of registering a new one.
    """
    try:
        spec = load_spec(sweep)
        base_files = ([base] if isinstance(base, str) else list(base)) if base else list(spec.base)
        if backend == "wandb":
            if dry_run:
                print(json.dumps(wandb_sweep_config(spec), indent=2))
                return wandb_sweep_config(spec)
            if not checkpoint and not base_files:
                raise SweepError("no base config: give 'base:' in the sweep file or --base conf/<x>.yaml")
            return run_wandb(spec, base_files, output, checkpoint, count, project, entity, sweep_id)
        trials = expand(spec, count)
        root = sweep_root(spec, output)
        if dry_run:
            print(describe(trials, root))
            return [{"name": t.name, "params": t.params} for t in trials]
        check_trials(spec, trials, checkpoint, base_files)
    except SweepError as err:
        raise SystemExit(f"sweep: {err}") from None
    results = run_local(spec, trials, base_files, root, checkpoint)
    done = sum(r.get("status") == "done" for r in results)
    print(f"{done} / {len(results)} trials done under {root}/")
    for r in results:
        print(f"  {r['name']}: {r.get('status')}" + (f" ({r['error']})" if r.get("error") else ""))
    print(f"dashboard: python -m lightning_auffusion dashboard --runs '[\"{root}\"]' --output {root}/dashboard")
    return results
