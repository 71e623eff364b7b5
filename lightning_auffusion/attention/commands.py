"""Subcommands ``style-transfer``, ``inpaint``, ``word-swap`` and ``reweight``.

Each loads a model from ``--checkpoint`` (an ``AuffusionLDM`` checkpoint from ``fit``) or ``--pretrained``
(a released Auffusion layout directory or hub id), runs the manipulation of
:mod:`lightning_auffusion.attention.manipulations`, and writes into ``output_dir``: ``<name>.wav``
(16-bit) and ``<name>.png`` for the result, ``<name>_source.wav/.png`` for the reference (the unedited
generation, or the input clip after the VAE round trip), and one line per run in ``manipulations.jsonl``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from typing_extensions import Unpack

from lightning_auffusion.diffusion.options import EditOptions, GenerateOptions, split_options
from lightning_auffusion.errors import MissingInputError

log = logging.getLogger(__name__)
MANIFEST = "manipulations.jsonl"


def _pipeline(options: dict, duration: bool):
    """(pipeline, sampling options, resolved settings) of a command's ``**options``: each sampling setting
    left unset takes the model's own, else the released one."""
    source, sampling = split_options(options)
    pipeline = source.load()
    return pipeline, sampling, sampling.resolve(pipeline.sampling, duration=duration)


def _run_and_record(run, options: dict, duration: bool, command: str, output_dir: str, name: str, **arguments) -> str:
    """Run manipulation ``run`` on the model of ``options`` with ``arguments`` (by name) and the resolved sampling
    settings, write its result as ``name`` into ``output_dir`` and record the command, the arguments (tuples as
    lists), the seed and the settings in the manifest."""
    pipeline, sampling, settings = _pipeline(options, duration=duration)
    output = run(pipeline, **arguments, **settings, seed=sampling.seed, negative_prompt=sampling.negative_prompt)
    shown = {key: list(value) if isinstance(value, tuple) else value for key, value in arguments.items()}
    write_outputs(output, output_dir, name, {"command": command, **shown, "seed": sampling.seed, **settings})
    return output_dir


def _check_file(path: str) -> None:
    if not Path(path).is_file():
        raise MissingInputError(f"source audio {path} not found (give a WAV/FLAC/OGG file path)")


def write_outputs(output, output_dir: str, name: str, record: dict) -> dict:
    """Write the result row 0 and its ``source`` as WAV + PNG and append ``record`` to the manifest."""
    from lightning_auffusion.audio.io import save_wav
    from lightning_auffusion.plotting import save_spectrogram_png

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for suffix, item in (("", output), ("_source", output.source)):
        if item is None:
            continue
        wav = out / f"{name}{suffix}.wav"
        save_wav(wav, item.audio[0], item.sample_rate)
        png = save_spectrogram_png(
            item.logmel[0], out / f"{name}{suffix}.png", title=item.prompts[0], sample_rate=item.sample_rate
        )
        files[f"wav{suffix}"], files[f"png{suffix}"] = wav.name, png.name
    record = {**record, **files}
    with open(out / MANIFEST, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    log.info("wrote %s into %s", ", ".join(files.values()), output_dir)
    return record


def _slug(text: str) -> str:
    from lightning_auffusion.audio.writers import slugify

    return slugify(text, max_length=40)


def style_transfer(
    audio: str,
    prompt: str,
    strength: float = 0.5,
    output_dir: str = "outputs/style_transfer",
    **options: Unpack[EditOptions],
) -> str:
    """SDEdit an audio file towards a prompt (paper appendix E.2): the source is noised with ``seed`` to
    ``strength`` of the schedule and the last ``strength x num_inference_steps`` steps are run.

    Args:
        audio: source audio file (resampled to the model's rate, mono, cut to one clip).
        prompt: text the result should match.
        strength: fraction of the schedule the source is noised to: 0 keeps it, 1 ignores it (paper: 0.1-0.7).
        output_dir: folder for the WAV/PNG files and manipulations.jsonl.
        **options: the model and sampling options (see ``lightning_auffusion.diffusion.options``).
    """
    from lightning_auffusion.attention.manipulations import style_transfer as run

    _check_file(audio)
    name = f"style_{strength:.2f}_{_slug(prompt)}"
    return _run_and_record(
        run, options, False, "style-transfer", output_dir, name, audio=audio, prompt=prompt, strength=strength
    )


def inpaint(
    audio: str,
    prompt: str,
    start_s: float = 2.56,
    end_s: float = 7.68,
    strength: float = 1.0,
    output_dir: str = "outputs/inpaint",
    **options: Unpack[EditOptions],
) -> str:
    """Regenerate a time span of an audio file, keeping the rest (paper appendix E.3).

    Args:
        audio: source audio file (resampled to the model's rate, mono, cut to one clip).
        prompt: text describing the whole clip (the paper uses the clip's own caption).
        start_s: start of the span to regenerate, seconds (2.56 = frame 256).
        end_s: end of the span, seconds (7.68 = frame 768).
        strength: 1 regenerates the span from pure noise; lower values start from the noised source.
        output_dir: folder for the WAV/PNG files and manipulations.jsonl.
        **options: the model and sampling options (see ``lightning_auffusion.diffusion.options``).
    """
    from lightning_auffusion.attention.manipulations import inpaint as run

    _check_file(audio)
    name = f"inpaint_{start_s:g}-{end_s:g}_{_slug(prompt)}"
    spans = dict(start_s=start_s, end_s=end_s, strength=strength)
    return _run_and_record(run, options, False, "inpaint", output_dir, name, audio=audio, prompt=prompt, **spans)


def word_swap(
    source_prompt: str,
    target_prompt: str,
    cross_window: tuple[float, float] = (0.0, 0.8),
    self_window: tuple[float, float] = (0.0, 0.4),
    output_dir: str = "outputs/word_swap",
    **options: Unpack[GenerateOptions],
) -> str:
    """Prompt-to-prompt word replacement (paper appendix E.4): the target prompt keeps the source's attention;
    both start from the same noise (``seed``).

    Args:
        source_prompt: the original prompt, e.g. "A man is speaking in a huge room".
        target_prompt: the same prompt with words swapped one for one, e.g. "A man is speaking in a small room".
        cross_window: [start, end) fraction of the steps where the target uses the source's cross-attention.
        self_window: [start, end) fraction of the steps where it copies the source's self-attention.
        output_dir: folder for the WAV/PNG files and manipulations.jsonl.
        **options: the model and sampling options (see ``lightning_auffusion.diffusion.options``).
    """
    from lightning_auffusion.attention.manipulations import word_swap as run

    prompts = dict(source_prompt=source_prompt, target_prompt=target_prompt)
    windows = dict(cross_window=cross_window, self_window=self_window)
    return _run_and_record(
        run, options, True, "word-swap", output_dir, f"swap_{_slug(target_prompt)}", **prompts, **windows
    )


def reweight(
    prompt: str,
    words: dict[str, float],
    cross_window: tuple[float, float] = (0.0, 0.8),
    self_window: tuple[float, float] = (0.0, 0.4),
    output_dir: str = "outputs/reweight",
    **options: Unpack[GenerateOptions],
) -> str:
    """Scale the cross-attention of chosen prompt words (paper appendix E.5); the edited and the plain run
    start from the same noise (``seed``).

    Args:
        prompt: the prompt, e.g. "Chopping tomatoes on a wooden table".
        words: word -> attention factor, e.g. '{"chopping": 2.0}' (>1 strengthens, <1 weakens).
        cross_window: [start, end) fraction of the steps where the re-weighting applies.
        self_window: [start, end) fraction of the steps where the edited run copies the plain run's self-attention.
        output_dir: folder for the WAV/PNG files and manipulations.jsonl.
        **options: the model and sampling options (see ``lightning_auffusion.diffusion.options``).
    """
    from lightning_auffusion.attention.manipulations import reweight as run

    tag = "-".join(f"{_slug(w)}{v:g}" for w, v in words.items())
    windows = dict(cross_window=cross_window, self_window=self_window)
    name = f"reweight_{tag}_{_slug(prompt)}"
    return _run_and_record(
        run, options, True, "reweight", output_dir, name, prompt=prompt, words=dict(words), **windows
    )
