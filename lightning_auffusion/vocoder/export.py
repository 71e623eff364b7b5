"""``export-vocoder`` and ``vocode`` subcommands.

``export-vocoder`` turns a VocoderModule Lightning checkpoint into the released Auffusion layout
(``config.json`` + ``vocoder.pt``) and/or an original HiFi-GAN generator file (plus discriminators).
``vocode`` resynthesises audio files through a vocoder (their log-mel -> generator -> WAV), optionally
with Griffin-Lim next to it and the distances to the input, to check a vocoder by ear and by number.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from lightning_auffusion.audio.io import AUDIO_EXTENSIONS, AudioLoadError, load_audio, save_wav
from lightning_auffusion.audio.mel import LogMelSpectrogram, peak_normalize
from lightning_auffusion.errors import UserInputError
from lightning_auffusion.progress import progress_bar
from lightning_auffusion.vocoder.checkpoint import (
    generator_from_lightning,
    load_state_into,
    load_vocoder,
    read_checkpoint,
    save_auffusion_vocoder,
    save_hifigan_discriminators,
    save_hifigan_generator,
)
from lightning_auffusion.vocoder.config import DiscriminatorConfig
from lightning_auffusion.vocoder.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from lightning_auffusion.vocoder.griffin_lim import GriffinLim, GriffinLimConfig
from lightning_auffusion.vocoder.stft_loss import multi_resolution_stft_distance

log = logging.getLogger(__name__)


def export_vocoder(
    checkpoint: str,
    out_dir: str | None = None,
    hifigan_file: str | None = None,
    discriminator_file: str | None = None,
    use_ema: bool = True,
    safetensors: bool = True,
) -> dict[str, str]:
    """Export the generator of a VocoderModule Lightning checkpoint.

    Args:
        checkpoint: Lightning checkpoint written while training ``VocoderModule`` (e.g. ``.../last.ckpt``).
        out_dir: write the Auffusion layout here (``config.json`` + ``vocoder.pt``, weight-normalised
            HiFi-GAN names); the folder works as ``vocoder/`` of an Auffusion model and with ``load_vocoder``.
        hifigan_file: also write an original HiFi-GAN generator file (``{"generator": ...}``) with its
            ``config.json`` beside it, e.g. ``exports/g_00100000``.
        discriminator_file: also write the discriminators as an original ``do_*`` file (no optimizer states).
        use_ema: export the generator's weight average when the run kept one (``generator_ema_decay``).
        safetensors: also write ``out_dir/vocoder.safetensors`` (loads without unpickling; ``vocoder.pt``
            stays for the released loader).
    """
    if out_dir is None and hifigan_file is None and discriminator_file is None:
        raise UserInputError("nothing to export: give out_dir and/or hifigan_file and/or discriminator_file")
    data = read_checkpoint(checkpoint, "cpu")
    if not (isinstance(data, dict) and "state_dict" in data):
        raise UserInputError(
            f"{checkpoint}: not a Lightning checkpoint (no 'state_dict'); it should come from `fit` of VocoderModule"
        )
    generator = generator_from_lightning(data, checkpoint, use_ema=use_ema)
    written: dict[str, str] = {}
    if out_dir is not None:
        written["auffusion_dir"] = str(save_auffusion_vocoder(generator, out_dir, safetensors=safetensors))
    if hifigan_file is not None:
        written["hifigan_file"] = str(save_hifigan_generator(generator, hifigan_file))
    if discriminator_file is not None:
        written["discriminator_file"] = str(_export_discriminators(data, discriminator_file, checkpoint))
    log.info("exported %s (generator step %s): %s", checkpoint, data.get("global_step"), written)
    return written


def _export_discriminators(data: dict[str, Any], path: str, source: str) -> Path:
    cfg = DiscriminatorConfig(**dict(data["hyper_parameters"].get("discriminators") or {}))
    modules = {"mpd": MultiPeriodDiscriminator(cfg), "msd": MultiScaleDiscriminator(cfg)}
    for name, module in modules.items():
        state = {k[len(name) + 1 :]: v for k, v in data["state_dict"].items() if k.startswith(name + ".")}
        load_state_into(module, state, f"{source} [{name}]")
    steps = int(data.get("global_step", 0))
    return save_hifigan_discriminators(
        modules["mpd"], modules["msd"], path, steps=steps, epoch=int(data.get("epoch", 0))
    )


def _audio_files(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        elif path.is_file():
            files.append(path)
        else:
            log.warning("vocode: %s not found, skipped", path)
    return files


@torch.no_grad()
def vocode(
    inputs: str | list[str],
    vocoder: str,
    out_dir: str,
    vocoder_config: str | None = None,
    device: str = "cpu",
    griffin_lim: bool = False,
    griffin_lim_iters: int = 32,
    peak_normalize_input: bool = True,
    max_seconds: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Resynthesise audio files through a vocoder: audio -> log-mel -> generator -> WAV.

    Args:
        inputs: an audio file or folder, or a list of them (folders are searched recursively).
        vocoder: a VocoderModule checkpoint, an exported folder (config.json + vocoder.pt), a HiFi-GAN
            generator file, or a hub id (``org/name`` uses its ``vocoder/`` folder).
        out_dir: where ``<name>.wav`` (and ``<name>_griffin_lim.wav``) and ``metrics.json`` go.
        vocoder_config: HiFi-GAN config.json for a generator file without one beside it.
        device: torch device for the generator.
        griffin_lim: also write Griffin-Lim from the same mel, as a reference.
        griffin_lim_iters: Griffin-Lim iterations.
        peak_normalize_input: peak-normalise each input to the front end's level first (as Auffusion does).
        max_seconds: use only the start of each file.
        progress: show a progress bar (quiet when stderr is not a terminal).
    """
    generator = load_vocoder(vocoder, map_location=device, config=vocoder_config)
    mel_cfg = generator.config.mel_config()
    logmel = LogMelSpectrogram(mel_cfg).to(device)
    gl = GriffinLim(mel_cfg, GriffinLimConfig(n_iter=griffin_lim_iters)).to(device) if griffin_lim else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = _audio_files(list(inputs) if not isinstance(inputs, str) else [inputs])
    if not files:
        raise UserInputError(f"no audio files found in {inputs} (extensions: {', '.join(AUDIO_EXTENSIONS)})")
    results: dict[str, Any] = {}
    for path in progress_bar(files, enabled=progress, unit="file", desc="vocode"):
        try:
            audio, _ = load_audio(path, target_sr=mel_cfg.sample_rate, max_seconds=max_seconds)
        except AudioLoadError as err:
            log.warning("vocode: skipped %s", err)
            continue
        wave = torch.from_numpy(audio)[None].to(device)
        if peak_normalize_input:
            wave = peak_normalize(wave, mel_cfg.peak_level)
        frames = wave.shape[-1] // mel_cfg.hop_length
        if frames < 1:
            log.warning("vocode: skipped %s (shorter than one hop)", path)
            continue
        wave = wave[:, : frames * mel_cfg.hop_length]
        mel = logmel(wave)
        output = generator(mel)[:, 0]
        stem = path.stem if path.stem not in results else f"{path.parent.name}_{path.stem}"
        save_wav(out / f"{stem}.wav", output[0].cpu(), mel_cfg.sample_rate)
        entry = {"source": str(path), "vocoder": _distances(output, wave, logmel)}
        if gl is not None:
            reference = gl(mel)
            save_wav(out / f"{stem}_griffin_lim.wav", reference[0].cpu(), mel_cfg.sample_rate)
            entry["griffin_lim"] = _distances(reference, wave, logmel)
        results[stem] = entry
        log.info("vocode: %s -> %s %s", path, out / f"{stem}.wav", entry)
    with open(out / "metrics.json", "w") as fh:
        json.dump(results, fh, indent=2)
    return results


def _distances(estimate: torch.Tensor, reference: torch.Tensor, logmel: LogMelSpectrogram) -> dict[str, float]:
    n = min(estimate.shape[-1], reference.shape[-1])
    estimate, reference = estimate[..., :n], reference[..., :n]
    return {
        "mel_l1": float((logmel(estimate) - logmel(reference)).abs().mean()),
        "mrstft": float(multi_resolution_stft_distance(estimate, reference).mean()),
    }
