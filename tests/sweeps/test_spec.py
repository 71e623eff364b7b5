"""Sweep files: parsing, grid and seeded random expansion, dotted-path overrides, the dict given to W&B."""

from __future__ import annotations

import pytest
import yaml

from lightning_auffusion.sweeps.spec import (
    SweepError,
    apply_params,
    expand,
    load_spec,
    parse_spec,
    sanitize,
    wandb_sweep_config,
)

ENCODERS = [
    [{"name": "minilm", "kind": "minilm"}],
    [{"name": "scratch", "kind": "scratch"}],
    [{"name": "minilm", "kind": "minilm"}, {"name": "scratch", "kind": "scratch"}],
]


def _spec(**kw):
    data = {
        "name": "demo",
        "method": "grid",
        "parameters": {
            "model.init_args.encoders": {"values": ENCODERS},
            "model.init_args.encoders.*.dropout": {"values": [0.0, 0.1]},
            "trainer.max_steps": {"value": 3},
        },
    }
    data.update(kw)
    return parse_spec(data)


def test_grid_expands_the_product_with_list_values_and_readable_names():
    trials = expand(_spec())
    assert len(trials) == 6
    assert [t.params["model.init_args.encoders"] for t in trials[::2]] == ENCODERS
    assert trials[0].name == "t000_encoders=minilm_dropout=0"
    assert trials[5].name == "t005_encoders=minilm+scratch_dropout=0.1"
    assert all("max_steps" not in t.name for t in trials)  # constant parameters stay out of the names


def test_nested_dotted_paths_wildcards_and_indices_apply_shorter_paths_first():
    base = {
        "trainer": {"max_steps": 100, "logger": False},
        "model": {"init_args": {"encoders": [{"name": "clip", "kind": "clip", "dropout": 0.1}], "lr": 1}},
    }
    params = {
        "model.init_args.encoders.*.dropout": 0.0,
        "model.init_args.encoders": ENCODERS[2],
        "trainer.max_steps": 3,
        "model.init_args.unet": {"sample_size": 8},
    }
    out = apply_params(base, params)
    assert [e["name"] for e in out["model"]["init_args"]["encoders"]] == ["minilm", "scratch"]
    assert all(e["dropout"] == 0.0 for e in out["model"]["init_args"]["encoders"])
    assert out["trainer"] == {"max_steps": 3, "logger": False} and out["model"]["init_args"]["lr"] == 1
    assert base["trainer"]["max_steps"] == 100  # the base is not modified
    merged = apply_params(
        {"evaluate": {"prompts": "p.txt", "seed": 0}}, {"evaluate": {"num_inference_steps": 10, "guidance_scale": 7.5}}
    )
    assert merged["evaluate"] == {"prompts": "p.txt", "seed": 0, "num_inference_steps": 10, "guidance_scale": 7.5}
    assert apply_params({"a": [1, 2]}, {"a.1": 5}) == {"a": [1, 5]}
    with pytest.raises(SweepError, match="not an index"):
        apply_params({"a": [1, 2]}, {"a.7": 5})


def test_random_search_is_seeded_and_follows_the_distributions():
    data = {
        "method": "random",
        "run_cap": 8,
        "seed": 3,
        "parameters": {
            "model.init_args.learning_rate": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
            "trainer.max_steps": {"min": 2, "max": 5},
            "model.init_args.encoders": {"values": ENCODERS},
        },
    }
    first, again = expand(parse_spec(data)), expand(parse_spec(data))
    assert [t.params for t in first] == [t.params for t in again] and len(first) == 8
    assert all(1e-5 <= t.params["model.init_args.learning_rate"] <= 1e-2 for t in first)
    assert all(
        isinstance(t.params["trainer.max_steps"], int) and 2 <= t.params["trainer.max_steps"] <= 5 for t in first
    )
    other = expand(parse_spec({**data, "seed": 4}))
    assert [t.params for t in other] != [t.params for t in first]
    assert len(expand(parse_spec(data), count=2)) == 2


@pytest.mark.parametrize(
    "data, message",
    [
        ({"method": "bayes", "parameters": {"a": {"values": [1]}}}, "--backend wandb"),
        ({"method": "random", "parameters": {"a": {"values": [1]}}}, "run_cap"),
        ({"method": "grid", "parameters": {"a": {"distribution": "uniform", "min": 0, "max": 1}}}, "method: random"),
    ],
)
def test_what_cannot_expand_locally_is_refused_in_one_line(data, message):
    with pytest.raises(SweepError, match=message) as info:
        expand(parse_spec(data))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"method": "grid"}, "needs 'parameters'"),
        ({"method": "sideways", "parameters": {"a": {"value": 1}}}, "method"),
        ({"method": "grid", "parameters": {"a": 3}}, "must be a mapping"),
        ({"method": "grid", "parameters": {"a..b": {"value": 1}}}, "empty path segment"),
        ({"method": "grid", "parameters": {"a": {"values": []}}}, "non-empty"),
        ({"method": "grid", "parameters": {"a": {"value": 1}}, "bogus": 1}, "unknown sweep keys"),
    ],
)
def test_bad_sweep_files_name_the_problem(data, message):
    with pytest.raises(SweepError, match=message):
        parse_spec(data)


def test_load_spec_errors_and_names(tmp_path):
    with pytest.raises(SweepError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [grid\n")
    with pytest.raises(SweepError, match="not valid YAML"):
        load_spec(bad)
    good = tmp_path / "my sweep!.yaml"
    good.write_text(yaml.safe_dump({"method": "grid", "parameters": {"a": {"value": 1}}}))
    assert load_spec(good).name == "my-sweep"
    assert sanitize("../../etc/passwd") == "etc-passwd" and sanitize("...") == "trial"


def test_wandb_conversion_keeps_wandb_keys_only():
    spec = _spec(
        base="conf/ldm/quickstart.yaml",
        evaluate={"prompts": "p.txt"},
        media={"prompts": ["a"]},
        metric={"name": "eval/alignment_accuracy", "goal": "maximize"},
        seed=1,
        run_cap=4,
    )
    config = wandb_sweep_config(spec)
    assert set(config) == {"name", "method", "parameters", "metric", "run_cap"}
    assert config["parameters"]["model.init_args.encoders"]["values"] == ENCODERS
    assert config["metric"] == {"name": "eval/alignment_accuracy", "goal": "maximize"}
