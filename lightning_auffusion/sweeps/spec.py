"""Sweep files in W&B's sweep YAML format, and their expansion into trials for the local backend.

A sweep file is what ``wandb.sweep`` takes (``method``: grid, random or bayes; ``parameters`` each with
``value``, ``values`` or a ``distribution``; ``metric``; ``run_cap``) plus the project's own keys, which are
left out of the dict handed to W&B:

- ``base``: the base config file(s) of every trial (``--base`` on the command line replaces it);
- ``evaluate``: options of the ``evaluate`` command run after each trial's ``fit`` (prompts, reference, ...);
- ``media``: options of the ``generate`` command writing each trial's samples for the dashboard;
- ``seed``: seed of the local random search; ``output``: the root folder of the trials (``runs``).

Parameter names are dotted paths into the trial's config: ``trainer.max_steps``,
``model.init_args.encoders`` (a list value replaces the list), ``model.init_args.encoders.0.dropout`` (an
index), ``model.init_args.encoders.*.dropout`` (every element), ``evaluate.guidance_scale`` (the evaluate
block). A dict value is merged into the dict at its path; anything else replaces it. Shorter paths are
applied first, so ``encoders.*.dropout`` applies to whichever encoder list the trial picked.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightning_auffusion.errors import UserInputError

METHODS = ("grid", "random", "bayes")
# the keys of W&B's sweep configuration; everything else in a sweep file is the project's
WANDB_KEYS = (
    "name",
    "description",
    "method",
    "metric",
    "parameters",
    "early_terminate",
    "run_cap",
    "program",
    "command",
    "project",
    "entity",
)
PROJECT_KEYS = ("base", "evaluate", "media", "seed", "output")
DISTRIBUTIONS = (
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform",
    "log_uniform_values",
    "q_log_uniform_values",
    "normal",
    "q_normal",
)
_NAME_RE = re.compile(r"[^A-Za-z0-9._+=-]+")


class SweepError(UserInputError):
    """A sweep file that cannot run; the message is one line naming the problem."""


@dataclass
class Trial:
    """One point of a sweep: its folder name and its parameter values (dotted path -> value)."""

    index: int
    name: str
    params: dict[str, Any]


@dataclass
class SweepSpec:
    name: str
    method: str
    parameters: dict[str, dict[str, Any]]
    base: list[str] = field(default_factory=list)
    evaluate: dict[str, Any] = field(default_factory=dict)
    media: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    output: str = "runs"
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def run_cap(self) -> int | None:
        return self.raw.get("run_cap")


def sanitize(text: str, max_length: int = 80) -> str:
    """A safe folder name: letters, digits and ``. _ + = -`` only, no leading dot, at most ``max_length``."""
    cleaned = _NAME_RE.sub("-", str(text)).strip("-.")
    return cleaned[:max_length].rstrip("-.") or "trial"


def _check_parameter(key: str, param: Any) -> None:
    if not isinstance(param, dict):
        raise SweepError(f"parameter {key!r} must be a mapping with 'value', 'values' or 'distribution', got {param!r}")
    if "values" in param and (not isinstance(param["values"], list) or not param["values"]):
        raise SweepError(f"parameter {key!r}: 'values' must be a non-empty list")
    if not any(k in param for k in ("value", "values", "distribution", "min", "max")):
        raise SweepError(f"parameter {key!r} needs 'value', 'values', or a distribution with min/max")
    dist = param.get("distribution")
    if dist is not None and dist not in DISTRIBUTIONS:
        raise SweepError(f"parameter {key!r}: distribution {dist!r} is not supported; use one of {list(DISTRIBUTIONS)}")
    if any(not part for part in key.split(".")):
        raise SweepError(f"parameter name {key!r} has an empty path segment")


def parse_spec(data: dict[str, Any], name: str = "sweep") -> SweepSpec:
    """Validate a loaded sweep file (``name`` is used when the file has none)."""
    if not isinstance(data, dict):
        raise SweepError("a sweep file must be a YAML mapping with 'method' and 'parameters'")
    unknown = sorted(set(data) - set(WANDB_KEYS) - set(PROJECT_KEYS))
    if unknown:
        raise SweepError(
            f"unknown sweep keys {unknown}; W&B's are {list(WANDB_KEYS)}, the project's {list(PROJECT_KEYS)}"
        )
    method = data.get("method")
    if method not in METHODS:
        raise SweepError(f"sweep 'method' must be one of {list(METHODS)}, got {method!r}")
    parameters = data.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepError("a sweep needs 'parameters': a mapping of dotted config paths to value/values/distribution")
    for key, param in parameters.items():
        _check_parameter(str(key), param)
    base = data.get("base") or []
    base = [base] if isinstance(base, str) else list(base)
    for key in ("evaluate", "media"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise SweepError(f"sweep key {key!r} must be a mapping of that command's options")
    run_cap = data.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or run_cap < 1):
        raise SweepError(f"run_cap must be a positive integer, got {run_cap!r}")
    return SweepSpec(
        name=sanitize(data.get("name") or name),
        method=method,
        parameters=dict(parameters),
        base=base,
        evaluate=dict(data.get("evaluate") or {}),
        media=dict(data.get("media") or {}),
        seed=int(data.get("seed", 0)),
        output=str(data.get("output", "runs")),
        raw=dict(data),
    )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SweepError(f"sweep file {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from err
    return parse_spec(data, name=path.stem)


# ------------------------------------------------------------------------------------------ expansion
def _grid_values(key: str, param: dict[str, Any]) -> list[Any]:
    if "values" in param:
        return list(param["values"])
    if "value" in param:
        return [param["value"]]
    raise SweepError(
        f"grid search needs 'value' or 'values' for every parameter; {key!r} has a distribution "
        "(use method: random, or list its values)"
    )


def _sample(key: str, param: dict[str, Any], rng: random.Random) -> Any:
    """One draw of a parameter, with W&B's meaning of each distribution."""
    if "value" in param:
        return param["value"]
    if "values" in param:
        probs = param.get("probabilities")
        return rng.choices(param["values"], weights=probs)[0] if probs else rng.choice(param["values"])
    dist = param.get("distribution")
    low, high = param.get("min"), param.get("max")
    if dist is None:
        dist = "int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform"
    if dist in ("normal", "q_normal"):
        value = rng.gauss(float(param.get("mu", 0.0)), float(param.get("sigma", 1.0)))
        return round(value / param.get("q", 1)) * param.get("q", 1) if dist == "q_normal" else value
    if low is None or high is None or low > high:
        raise SweepError(f"parameter {key!r}: distribution {dist!r} needs min <= max")
    if dist == "int_uniform":
        return rng.randint(int(low), int(high))
    if dist == "uniform":
        return rng.uniform(low, high)
    if dist == "q_uniform":
        q = param.get("q", 1)
        return round(rng.uniform(low, high) / q) * q
    if dist == "log_uniform":  # W&B: min/max are the natural logs of the bounds
        return math.exp(rng.uniform(low, high))
    if dist in ("log_uniform_values", "q_log_uniform_values"):
        if low <= 0:
            raise SweepError(f"parameter {key!r}: {dist} needs min > 0")
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
        return round(value / param.get("q", 1)) * param.get("q", 1) if dist.startswith("q_") else value
    raise SweepError(f"parameter {key!r}: distribution {dist!r} is not supported locally")


def _short(value: Any) -> str:
    """A short label of a parameter value for trial names (encoder lists by their names)."""
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        return "+".join(str(v["name"]) for v in value)
    if isinstance(value, dict):
        return "-".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "+".join(_short(v) for v in value)
    return str(value)


def trial_name(index: int, params: dict[str, Any], varying: list[str]) -> str:
    """``t003_encoders=minilm_dropout=0.1``: the index, then each varying parameter's last path segment."""
    parts = [f"t{index:03d}"]
    for key in varying:
        named = [p for p in key.split(".") if p != "*" and not p.lstrip("-").isdigit()] or [key]
        parts.append(f"{sanitize(named[-1], 24)}={_short(params[key])}")
    return sanitize("_".join(parts))


def expand(spec: SweepSpec, count: int | None = None) -> list[Trial]:
    """The trials of a sweep: every grid point in order, or ``count`` (else ``run_cap``) seeded random draws.
    Bayes needs W&B's controller (it learns from finished runs) and is refused here."""
    if spec.method == "bayes":
        raise SweepError("method 'bayes' needs W&B's sweep controller: run with --backend wandb")
    keys = list(spec.parameters)
    if spec.method == "grid":
        combos = list(itertools.product(*[_grid_values(k, spec.parameters[k]) for k in keys]))
        points = [dict(zip(keys, combo)) for combo in combos]
        cap = count or spec.run_cap
        points = points[:cap] if cap else points
    else:
        cap = count or spec.run_cap
        if not cap:
            raise SweepError("method 'random' needs run_cap in the sweep file (or --count): how many trials to draw")
        rng = random.Random(spec.seed)
        points = [{k: _sample(k, spec.parameters[k], rng) for k in keys} for _ in range(cap)]
    varying = [k for k in keys if len({json.dumps(p[k], sort_keys=True, default=str) for p in points}) > 1]
    return [Trial(i, trial_name(i, p, varying), p) for i, p in enumerate(points)]


# ------------------------------------------------------------------------------------------ overrides
def _merge(target: Any, value: Any) -> Any:
    if isinstance(target, dict) and isinstance(value, dict):
        out = dict(target)
        for k, v in value.items():
            out[k] = _merge(out.get(k), v)
        return out
    return copy.deepcopy(value)


def _set(node: Any, parts: list[str], value: Any, key: str) -> Any:
    if not parts:
        return _merge(node, value)
    head, rest = parts[0], parts[1:]
    if head == "*":
        if isinstance(node, list):
            return [_set(item, rest, value, key) for item in node]
        if isinstance(node, dict):
            return {k: _set(v, rest, value, key) for k, v in node.items()}
        raise SweepError(f"parameter {key!r}: '*' needs a list or mapping there, found {type(node).__name__}")
    if isinstance(node, list):
        if not head.lstrip("-").isdigit() or not -len(node) <= int(head) < len(node):
            raise SweepError(f"parameter {key!r}: {head!r} is not an index of a list of {len(node)}")
        out = list(node)
        out[int(head)] = _set(node[int(head)], rest, value, key)
        return out
    if node is None:
        node = {}
    if not isinstance(node, dict):
        raise SweepError(f"parameter {key!r}: cannot go into {head!r} of a {type(node).__name__}")
    out = dict(node)
    out[head] = _set(node.get(head), rest, value, key)
    return out


def apply_params(config: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with each dotted-path parameter set (shorter paths first, then file order)."""
    out = copy.deepcopy(config)
    for key in sorted(params, key=lambda k: len(k.split("."))):
        out = _set(out, key.split("."), params[key], key)
    return out


def load_config_files(paths: list[str]) -> dict[str, Any]:
    """The base configs merged in order (later files override; lists are replaced)."""
    merged: dict[str, Any] = {}
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise SweepError(f"base config {path!r} not found")
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise SweepError(f"base config {path!r} is not a YAML mapping")
        merged = _merge(merged, data)
    return merged


def wandb_sweep_config(spec: SweepSpec) -> dict[str, Any]:
    """The dict handed to ``wandb.sweep``: the W&B keys of the file, the project's own left out."""
    out = {k: copy.deepcopy(v) for k, v in spec.raw.items() if k in WANDB_KEYS}
    out["name"] = spec.name
    return out
