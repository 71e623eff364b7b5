"""--backend wandb without a server: a stand-in ``wandb`` module records what reaches ``wandb.sweep`` and
drives the agent's trial function with a stand-in ``wandb.config``."""

from __future__ import annotations

import json
import sys
import types

import yaml

from lightning_auffusion.sweeps.command import sweep
from tests.sweeps.conftest import tiny_base_config, write_sweep


class FakeRun:
    def __init__(self, log, config=None, run_id="abc123", **kwargs) -> None:
        self.config, self.id, self.project, self.entity = dict(config or {}), run_id, "proj", None
        self.summary, self.log, self.kwargs = {}, log, kwargs

    def finish(self, exit_code=0):
        self.log.append(("finish", self.id, exit_code))


def fake_wandb(trial_config):
    log, module = [], types.ModuleType("wandb")

    def init(**kwargs):
        run = FakeRun(log, trial_config if not kwargs else None, **kwargs)
        log.append(("init", kwargs, run))
        return run

    def sweep_(config, project=None, entity=None):
        log.append(("sweep", config, project))
        return "sweep42"

    def agent(sweep_id, function=None, count=None, project=None, entity=None):
        log.append(("agent", sweep_id, count))
        for _ in range(count or 1):
            function()

    module.init, module.sweep, module.agent = init, sweep_, agent
    return module, log


def test_wandb_backend_registers_the_sweep_and_runs_trials_through_the_agent(tmp_path, monkeypatch):
    params = {"model.init_args.encoders.*.dropout": 0.0, "trainer.max_steps": 1}
    module, log = fake_wandb(params)
    monkeypatch.setitem(sys.modules, "wandb", module)
    calls = []

    def command(argv, log_path):
        calls.append(argv)
        if argv[0] == "evaluate":
            with open(argv[2]) as fh:
                out = yaml.safe_load(fh)["output"]
            with open(f"{out}/metrics.json", "w") as fh:
                json.dump({"metrics": {"alignment_accuracy": 0.5, "note": "text"}}, fh)
        return 0

    from lightning_auffusion.sweeps import runner

    monkeypatch.setattr(runner, "run_command", command)
    base = tiny_base_config(tmp_path, logger=True)
    spec = write_sweep(
        tmp_path,
        {"model.init_args.encoders.*.dropout": {"values": [0.0, 0.1]}, "trainer.max_steps": {"value": 1}},
        metric={"name": "eval/alignment_accuracy", "goal": "maximize"},
        seed=3,
    )
    assert sweep(str(spec), base=[str(base)], output=str(tmp_path / "out"), backend="wandb", count=1) == "sweep42"

    kind, config, project = log[0]
    assert kind == "sweep" and project == "lightning_auffusion"
    assert config == {
        "name": "tiny",
        "method": "grid",
        "metric": {"name": "eval/alignment_accuracy", "goal": "maximize"},
        "parameters": {"model.init_args.encoders.*.dropout": {"values": [0.0, 0.1]}, "trainer.max_steps": {"value": 1}},
    }
    assert log[1] == ("agent", "sweep42", 1)
    trial = tmp_path / "out" / "tiny" / "abc123"
    fit = yaml.safe_load((trial / "trial_config.yaml").read_text())
    assert fit["model"]["init_args"]["encoders"][0]["dropout"] == 0.0 and fit["trainer"]["max_steps"] == 1
    logger = fit["trainer"]["logger"]["init_args"]
    assert logger["id"] == "abc123" and logger["resume"] == "allow" and logger["offline"] is False
    assert logger["save_dir"] == str(trial)
    assert [c[0] for c in calls] == ["fit", "generate", "evaluate"]
    # the agent's run is closed before the fit logs into it, reopened by id for the summary
    finishes = [e for e in log if e[0] == "finish"]
    assert len(finishes) == 2
    reopened = next(e[2] for e in log if e[0] == "init" and e[1])
    assert reopened.kwargs["id"] == "abc123" and reopened.summary["eval/alignment_accuracy"] == 0.5
    assert reopened.summary["trial/status"] == "done" and "eval/note" not in reopened.summary


def test_wandb_dry_run_prints_the_dict_for_wandb_sweep(tmp_path, capsys):
    spec = write_sweep(
        tmp_path,
        {"trainer.max_steps": {"values": [1, 2]}},
        method="bayes",
        metric={"name": "eval/fd", "goal": "minimize"},
    )
    config = sweep(str(spec), backend="wandb", dry_run=True)
    assert config["method"] == "bayes" and "evaluate" not in config and "media" not in config
    assert json.loads(capsys.readouterr().out) == config
