"""The shipped sweep files expand to the paper's settings, their trial configs are accepted by the CLI, and
the full LDM configs evaluate in the loop with the real extractors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_auffusion.sweeps.runner import fit_config, split_trial
from lightning_auffusion.sweeps.spec import expand, load_config_files, load_spec

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_sweep_files_expand_to_the_papers_settings():
    table2 = expand(load_spec(ROOT / "conf/sweeps/table2_encoders.yaml"))
    assert [t.name.split("=", 1)[1] for t in table2] == [
        "clip",
        "clap",
        "flan_t5_base",
        "flan_t5_large",
        "clap+flan_t5_large",
    ]
    assert all(
        t.params["model.init_args.learning_rate"] == 3e-5
        and t.params["trainer.max_steps"] == 100000
        and t.params["data.init_args.batch_size"] == 20
        for t in table2
    )
    table5 = expand(load_spec(ROOT / "conf/sweeps/table5_sampling.yaml"))
    points = {(t.params["evaluate"]["num_inference_steps"], t.params["evaluate"]["guidance_scale"]) for t in table5}
    assert points == {(s, 7.5) for s in (10, 25, 50, 100, 200)} | {(100, g) for g in (1.0, 2.0, 5.0, 7.5, 10.0)}
    assert len(table5) == 9
    quick = expand(load_spec(ROOT / "conf/sweeps/quickstart_encoders.yaml"))
    assert len(quick) == 6 and len({t.name for t in quick}) == 6
    kinds = {tuple(e["kind"] for e in t.params["model.init_args.encoders"]) for t in quick}
    assert kinds == {("minilm",), ("scratch",), ("minilm", "scratch")}
    sampling = expand(load_spec(ROOT / "conf/sweeps/quickstart_sampling.yaml"))
    points = [(t.params["evaluate"]["num_inference_steps"], t.params["evaluate"]["guidance_scale"]) for t in sampling]
    assert points == [(25, 1.0), (25, 3.0), (25, 5.0), (25, 7.0), (25, 10.0), (10, 3.0), (50, 3.0)]
    assert {t.params["evaluate.scheduler"] for t in sampling} == {"dpmsolver++"}


def printed_trial_config(sweep_name: str, index: int, tmp_path, capsys) -> tuple[dict, dict]:
    """Trial ``index`` of a shipped sweep as LightningCLI resolves it (``fit --print_config``), and its evaluate block."""
    from lightning_auffusion.cli import main

    spec = load_spec(ROOT / f"conf/sweeps/{sweep_name}.yaml")
    trial = expand(spec)[index]
    fit, evaluate, _ = split_trial(load_config_files([str(ROOT / b) for b in spec.base]), spec, trial)
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(fit_config(fit, tmp_path, spec.name, trial.name)))
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(path), "--print_config"])
    assert info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out), evaluate


@pytest.mark.parametrize(
    "sweep_name, index",
    [("table2_encoders", 4), ("quickstart_encoders", 5), ("quickstart_levers", 2)],
)
def test_trial_configs_of_shipped_sweeps_parse(sweep_name, index, tmp_path, capsys):
    printed, _ = printed_trial_config(sweep_name, index, tmp_path, capsys)
    encoders = printed["model"]["init_args"]["encoders"]
    if sweep_name == "quickstart_levers":  # both levers: a 40-token caption, cross-attention at both levels
        assert [e["max_length"] for e in encoders] == [40]
        unet = printed["model"]["init_args"]["unet"]
        assert unet["down_block_types"] == ["CrossAttnDownBlock2D"] * 2 and unet["block_out_channels"] == [32, 64]
    else:
        assert len(encoders) == 2
    if sweep_name == "quickstart_encoders":
        assert [e["kind"] for e in encoders] == ["minilm", "scratch"] and all(e["dropout"] == 0.1 for e in encoders)
    dirs = [c["init_args"].get("dirpath") for c in printed["trainer"]["callbacks"]]
    assert str(tmp_path / "checkpoints") in dirs


@pytest.mark.parametrize("sweep_name, index", [("quickstart_budget", 3), ("quickstart_pooled", 0)])
def test_quickstart_budget_and_pooled_trials_parse_with_their_levers(sweep_name, index, tmp_path, capsys):
    model = printed_trial_config(sweep_name, index, tmp_path, capsys)[0]["model"]["init_args"]
    assert model["waveform_decoder"] == "griffin_lim" and model["vocoder"] is None
    if sweep_name == "quickstart_budget":  # 1400 steps with token-position channels on MiniLM
        assert [e["token_position_channels"] for e in model["encoders"]] == [4]
        assert model["unet"]["block_out_channels"] == [32, 64]
    else:  # the caption pooled into the time embedding, the rest of the quickstart's U-Net kept
        assert model["unet"]["addition_embed_type"] == "text" and model["unet"]["block_out_channels"] == [32, 64]


def test_full_ldm_config_evaluates_in_the_loop_with_real_extractors():
    """conf/ldm/auffusion.yaml is the base of every full-size run (conf/ldm/encoders/*.yaml only swap encoders)."""
    config = yaml.safe_load((ROOT / "conf/ldm/auffusion.yaml").read_text())
    callbacks = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("EvaluationCallback")]
    assert len(callbacks) == 1
    args = callbacks[0]["init_args"]
    assert args["allow_random_weights"] is False and args["weights_dir"]
    assert set(args["metrics"]) == {"fd", "fad", "kl", "is", "clap"} and args["reference"]
    for override in (ROOT / "conf/ldm/encoders").glob("*.yaml"):
        assert "callbacks" not in (yaml.safe_load(override.read_text()).get("trainer") or {})


@pytest.mark.parametrize("config", ["conf/ldm/quickstart.yaml", "conf/ldm/longer/proof.yaml"])
def test_quickstart_size_configs_evaluate_alignment_and_ceilings_in_the_loop(config):
    data = yaml.safe_load((ROOT / config).read_text())
    (callback,) = [c for c in data["trainer"]["callbacks"] if c["class_path"].endswith("EvaluationCallback")]
    args = callback["init_args"]
    assert args["metrics"] == ["alignment"] and args["ceilings"] is True and args["attention_localisation"] is True
    assert args["reference"] and 0 < args["every_n_steps"] <= data["trainer"]["max_steps"]
    assert not {"num_inference_steps", "guidance_scale", "scheduler"} & set(args)  # the model's own sampling block


@pytest.mark.parametrize("index", [0, 1, 2])
def test_table1_baselines_trials_differ_only_in_their_method_and_parse(index, tmp_path, capsys):
    spec = load_spec(ROOT / "conf/sweeps/table1_baselines.yaml")
    assert len(expand(spec)) == 3 and spec.base == ["conf/ldm/quickstart.yaml"]
    printed, evaluate = printed_trial_config("table1_baselines", index, tmp_path, capsys)
    model, data = printed["model"]["init_args"], printed["data"]["init_args"]
    base = load_config_files([str(ROOT / b) for b in spec.base])
    assert printed["trainer"]["max_steps"] == base["trainer"]["max_steps"]
    assert data["batch_size"] == base["data"]["init_args"]["batch_size"] and data["mixup_probability"] == 0.0
    method = {0: "auffusion", 1: "riffusion", 2: "audioldm"}[index]
    assert ((model.get("image") or {}).get("mode") == "riffusion") == (method == "riffusion")  # null = minmax
    assert (model["waveform_decoder"] == "griffin_lim") == (method == "riffusion")
    assert (model["vocoder"] is None) == (method == "riffusion")  # the quickstart itself decodes with Griffin-Lim
    assert [e["kind"] for e in model["encoders"]] == (["clap_audio"] if method == "audioldm" else ["minilm"])
    assert evaluate["metrics"] == ["alignment"] and evaluate["ceilings"] is True
