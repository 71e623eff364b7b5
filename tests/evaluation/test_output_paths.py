"""Ids and captions from input never place a file outside its output folder."""

import json
import types

import pytest
import torch

from lightning_auffusion.errors import UserInputError
from lightning_auffusion.evaluation.command import evaluate, generate_folder
from lightning_auffusion.evaluation.sources import read_prompts
from lightning_auffusion.paths import file_in, safe_filename

TRAVERSAL_IDS = ["../../x", "../escape", "/abs/olute", "a/b\\c", "..", ".", ""]


@pytest.mark.parametrize("name", TRAVERSAL_IDS)
def test_unsafe_names_stay_in_the_folder(tmp_path, name):
    path = file_in(tmp_path, name, ".wav")
    assert path.resolve().parent == tmp_path.resolve() and path.name not in (".wav", "..wav")


def test_plain_names_are_kept():
    for name in ("00012", "Y-abc_123", "x-y", "clip.v2", "chien_été"):
        assert safe_filename(name) == name


def test_prompt_ids_are_made_plain(tmp_path):
    prompts = tmp_path / "p.jsonl"
    absolute = str(tmp_path / "outside" / "abs")
    rows = [{"id": "../../x", "caption": "a"}, {"id": absolute, "caption": "b"}, {"id": "ok-1", "caption": "c"}]
    prompts.write_text("\n".join(json.dumps(r) for r in rows))
    ids = list(read_prompts(prompts))
    assert ids[2] == "ok-1"
    assert all("/" not in i and not i.startswith(".") for i in ids)


def test_evaluate_generation_writes_inside_output(tmp_path, monkeypatch):
    class Module:
        sampling: dict = {}

    import lightning_auffusion.diffusion.sampling as sampling

    monkeypatch.setattr(
        sampling,
        "generate",
        lambda module, prompts, **kw: types.SimpleNamespace(audio=torch.zeros(len(prompts), 1600), sample_rate=16000),
    )
    folder = tmp_path / "run" / "generated"
    outside = tmp_path / "outside"
    generate_folder(
        Module(),
        {"../../x": "a", str(outside / "abs"): "b"},
        folder,
        num_inference_steps=1,
        guidance_scale=None,
        scheduler=None,
        seed=0,
        batch_size=2,
    )
    written = sorted(p.name for p in folder.iterdir())
    assert len(written) == 2 and not outside.exists() and not (tmp_path / "x.wav").exists()
    assert sorted(p for p in tmp_path.rglob("*.wav")) == sorted(folder.glob("*.wav"))


def test_evaluate_with_an_empty_reference_folder_fails(tmp_path):
    generated, reference = tmp_path / "gen", tmp_path / "ref"
    generated.mkdir()
    reference.mkdir()
    import numpy as np
    import soundfile as sf

    sf.write(generated / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(UserInputError, match="no usable reference audio"):
        evaluate(
            generated=str(generated),
            reference=str(reference),
            metrics=["fd"],
            output=str(tmp_path / "r"),
            weights_dir=str(tmp_path / "w"),
            allow_random_weights=True,
        )
