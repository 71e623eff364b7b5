"""Capture cross-attention probabilities of a U-Net and turn them into one map per prompt token.

``AttentionRecorder`` is a context manager: on entry it puts a :class:`RecordingAttnProcessor` on the
chosen cross-attention layers (by latent resolution and/or name) and a forward pre-hook on the U-Net; on
exit it puts back the exact original processor objects and removes the hook. Outside the context the
U-Net is untouched, so recording costs nothing when not asked for.

Aggregation follows the paper (section 4.3) and prompt-to-prompt: probabilities are averaged over heads
as they arrive, summed over denoising steps per layer, then averaged over steps and layers. Only the
conditional half of the classifier-free batch is kept (the U-Net batch is ``cat([uncond, cond])``).
Several denoising runs inside one context (e.g. ``generate`` working through its prompt batches) are
told apart by ``calls_per_run`` when given (U-Net calls per run, ``len(scheduler.timesteps)``), else by
the timestep going back up or the batch size changing; rows are numbered across runs in order, so
prompt ``i`` of a ``generate`` call is row ``i``.

Resolutions are downsampling factors relative to the latent: at Auffusion's 32 x 128 latent, factor 2
is 16 x 64, 4 is 8 x 32 and 8 is 4 x 16 (the paper's maps use 16 x 64 and 8 x 32, optionally 4 x 16).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F

from lightning_auffusion.attention.processors import RecordingAttnProcessor

log = logging.getLogger(__name__)

DEFAULT_RESOLUTIONS: tuple[int, ...] = (2, 4, 8)
PROCESSOR_SUFFIX = ".processor"


def layer_downsampling(unet, layer: str) -> int:
    """Downsampling factor (relative to the latent) at which attention layer ``layer`` of a
    ``UNet2DConditionModel`` runs: down block i at 2^i, the middle block and up block j mirror them."""
    n_down, n_up = len(unet.down_blocks), len(unet.up_blocks)
    match = re.match(r"(down_blocks|up_blocks)\.(\d+)\.", layer)
    if match:
        index = int(match.group(2))
        return 2**index if match.group(1) == "down_blocks" else 2 ** (n_up - 1 - index)
    if layer.startswith("mid_block"):
        return 2 ** (n_down - 1)
    raise ValueError(f"cannot tell the resolution of attention layer {layer!r}: not in down_blocks/mid_block/up_blocks")


def attention_layers(unet, cross: bool = True) -> dict[str, torch.nn.Module]:
    """Attention modules of ``unet`` by name (the processor key without ``.processor``), cross or self."""
    names = [key[: -len(PROCESSOR_SUFFIX)] for key in unet.attn_processors]
    modules = dict(unet.named_modules())
    return {name: modules[name] for name in names if bool(getattr(modules[name], "is_cross_attention", False)) == cross}


def downsampled_size(height: int, width: int, factor: int) -> tuple[int, int]:
    """Spatial size after halving ``log2(factor)`` times with stride-2 convolutions (ceil division)."""
    while factor > 1:
        height, width, factor = -(-height // 2), -(-width // 2), factor // 2
    return height, width


def select_layers(unet, resolutions: Sequence[int] | None, layers: Sequence[str] | None) -> dict[str, int]:
    """Cross-attention layers to record -> their downsampling factor; clear error if none match."""
    available = {name: layer_downsampling(unet, name) for name in attention_layers(unet, cross=True)}
    if not available:
        raise ValueError("this U-Net has no cross-attention layers: there is nothing to record")
    chosen = {
        name: factor
        for name, factor in available.items()
        if (resolutions is None or factor in resolutions) and (layers is None or any(part in name for part in layers))
    }
    if not chosen:
        factors = sorted(set(available.values()))
        raise ValueError(
            f"no cross-attention layer matches resolutions={list(resolutions) if resolutions else None} and "
            f"layers={list(layers) if layers else None}; this U-Net has cross-attention at downsampling factors "
            f"{factors} (relative to the latent). Pick some of those."
        )
    return chosen


@dataclass
class AttentionRun:
    """Sums of head-averaged probabilities of one denoising run: layer -> (rows, queries, tokens)."""

    rows: int
    latent_size: tuple[int, int]
    calls: int = 0
    last_timestep: float | None = None
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


class PatchesAttention:
    """Base of the context managers that wrap some of ``self.unet``'s attention processors and watch its
    forward calls: ``_patch`` installs the wrappers and the hook, ``_unpatch`` puts the U-Net back as it was."""

    unet: torch.nn.Module
    _original: dict | None = None
    _hook = None

    def _patch(self, wrappers: dict, hook, with_kwargs: bool = False) -> None:
        """``wrappers``: layer name -> ``wrap(original_processor)`` giving the processor to install."""
        self._original = dict(self.unet.attn_processors)
        processors = dict(self._original)
        for name, wrap in wrappers.items():
            key = name + PROCESSOR_SUFFIX
            processors[key] = wrap(self._original[key])
        self.unet.set_attn_processor(processors)
        self._hook = self.unet.register_forward_pre_hook(hook, with_kwargs=with_kwargs)

    def _unpatch(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._original is not None:
            self.unet.set_attn_processor(self._original)
            self._original = None


class AttentionRecorder(PatchesAttention):
    """Record cross-attention probabilities of ``unet`` while inside ``with AttentionRecorder(unet): ...``.

    Args:
        unet: a diffusers ``UNet2DConditionModel``.
        resolutions: downsampling factors (relative to the latent) whose cross-attention layers are recorded;
            None records every cross-attention layer.
        layers: optional substrings of layer names to keep (e.g. ``["up_blocks"]``); None keeps all.
        classifier_free: the U-Net batch is ``cat([uncond, cond])``; keep only the conditional half.
        image_scale: spectrogram pixels per latent cell (the VAE's downsampling, 8 for SD-1.5): the default
            size the maps are resized to is the latent size times this.
        store_device: where the running sums live ("cpu" moves every step's maps off the accelerator); None keeps
            the current run's sums where they are computed and moves finished runs to the CPU.
        calls_per_run: U-Net calls of one denoising run, to split runs exactly; None guesses from timesteps.
    """

    def __init__(
        self,
        unet,
        resolutions: Sequence[int] | None = DEFAULT_RESOLUTIONS,
        layers: Sequence[str] | None = None,
        classifier_free: bool = True,
        image_scale: int = 8,
        store_device: str | None = None,
        calls_per_run: int | None = None,
    ) -> None:
        self.unet = unet
        self.calls_per_run = calls_per_run
        self.resolutions = tuple(resolutions) if resolutions is not None else None
        self.classifier_free = classifier_free
        self.image_scale = image_scale
        self.store_device = store_device
        self.layers = select_layers(unet, self.resolutions, layers)
        self.runs: list[AttentionRun] = []
        self._recording = False
        self._paused = False

    # ------------------------------------------------------------------ installation
    def __enter__(self) -> AttentionRecorder:
        if self._original is not None:
            raise RuntimeError("AttentionRecorder is already active; it cannot be entered twice")
        wrappers = {name: partial(RecordingAttnProcessor, name, self) for name in self.layers}
        self._patch(wrappers, self._before_forward, with_kwargs=True)
        self._recording = True
        return self

    def __exit__(self, *exc) -> None:
        self._recording = False
        self._unpatch()

    @property
    def active(self) -> bool:
        return self._recording and not self._paused

    def pause(self) -> _Pause:
        """``with recorder.pause(): ...`` runs the U-Net without recording (e.g. a side computation)."""
        return _Pause(self)

    def reset(self) -> None:
        self.runs.clear()

    # ------------------------------------------------------------------ recording
    def _before_forward(self, module, args, kwargs):
        if not self.active:
            return
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs.get("timestep")
        t = float(torch.as_tensor(timestep).float().max()) if timestep is not None else None
        batch = sample.shape[0]
        if self.classifier_free:
            if batch % 2:
                raise ValueError(
                    f"classifier_free=True expects a U-Net batch cat([uncond, cond]) of even size, got {batch}; "
                    "use AttentionRecorder(..., classifier_free=False) when sampling without guidance"
                )
            batch //= 2
        size = (int(sample.shape[-2]), int(sample.shape[-1]))
        run = self.runs[-1] if self.runs else None
        new_run = (
            run is None
            or (self.calls_per_run is not None and run.calls >= self.calls_per_run)
            or run.rows != batch
            or run.latent_size != size
            or (t is not None and run.last_timestep is not None and t > run.last_timestep)
        )
        if new_run:
            if run is not None:  # a finished run waits on the CPU: accelerator memory stays flat over many batches
                run.sums = {layer: total.cpu() for layer, total in run.sums.items()}
            run = AttentionRun(rows=batch, latent_size=size)
            self.runs.append(run)
        run.calls += 1
        run.last_timestep = t
        return

    def record(self, layer: str, probs: torch.Tensor) -> None:
        """Called by the processors: ``probs`` (batch, heads, queries, tokens) of ``layer``."""
        if not self.runs:
            raise RuntimeError("attention was recorded outside a U-Net forward call")
        run = self.runs[-1]
        if self.classifier_free:
            probs = probs[probs.shape[0] // 2 :]
        mean = probs.mean(dim=1)
        if self.store_device is not None:
            mean = mean.to(self.store_device)
        if layer in run.sums:
            run.sums[layer] += mean
            run.counts[layer] += 1
        else:
            run.sums[layer] = mean.clone()
            run.counts[layer] = 1

    # ------------------------------------------------------------------ aggregation
    @property
    def num_rows(self) -> int:
        """Number of prompts recorded, over all runs."""
        return sum(run.rows for run in self.runs)

    def _locate(self, index: int) -> tuple[AttentionRun, int]:
        if not self.runs:
            raise RuntimeError("nothing was recorded: run the U-Net inside the AttentionRecorder context first")
        if not -self.num_rows <= index < self.num_rows:
            raise IndexError(f"prompt index {index} out of range: {self.num_rows} prompts were recorded")
        index %= self.num_rows
        for run in self.runs:
            if index < run.rows:
                return run, index
            index -= run.rows
        raise AssertionError("unreachable")

    def layer_maps(self, index: int = 0) -> dict[str, torch.Tensor]:
        """Layer -> (tokens, h, w) map of prompt ``index``, averaged over steps and heads; each position
        is a probability distribution over the tokens."""
        run, row = self._locate(index)
        maps = {}
        for layer, total in run.sums.items():
            mean = total[row].float() / run.counts[layer]
            h, w = downsampled_size(*run.latent_size, self.layers[layer])
            if h * w != mean.shape[0]:
                raise RuntimeError(
                    f"layer {layer} saw {mean.shape[0]} positions but a {run.latent_size} latent downsampled "
                    f"by {self.layers[layer]} gives {h}x{w}: this U-Net's layout is not the SD one this assumes"
                )
            maps[layer] = mean.T.reshape(-1, h, w)
        if not maps:
            raise RuntimeError("the chosen layers recorded nothing (did the U-Net run inside the context?)")
        return maps

    def resolution_maps(self, index: int = 0) -> dict[tuple[int, int], torch.Tensor]:
        """(h, w) -> (tokens, h, w) map averaged over the layers at that resolution (before any resizing)."""
        grouped: dict[tuple[int, int], list[torch.Tensor]] = {}
        for m in self.layer_maps(index).values():
            grouped.setdefault(tuple(m.shape[-2:]), []).append(m)
        return {size: torch.stack(ms).mean(0) for size, ms in grouped.items()}

    def token_maps(
        self, index: int = 0, size: tuple[int, int] | None = None, tokens: Sequence[int] | None = None
    ) -> torch.Tensor:
        """(tokens, H, W): every recorded layer's map resized (bilinear, so each position stays a
        distribution over tokens) to ``size`` (default: latent size x ``image_scale``) and averaged over
        layers. ``tokens`` picks a subset of token positions (all by default)."""
        run, _ = self._locate(index)
        if size is None:
            size = (run.latent_size[0] * self.image_scale, run.latent_size[1] * self.image_scale)
        layer_maps = self.layer_maps(index)
        total = None
        for m in layer_maps.values():
            if tokens is not None:
                m = m[list(tokens)]
            resized = F.interpolate(m[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
            total = resized if total is None else total.add_(resized)
        return total / len(layer_maps)


class _Pause:
    def __init__(self, recorder: AttentionRecorder) -> None:
        self.recorder = recorder

    def __enter__(self):
        self._was = self.recorder._paused
        self.recorder._paused = True
        return self.recorder

    def __exit__(self, *exc) -> None:
        self.recorder._paused = self._was


@dataclass
class TokenAttention:
    """Per-token attention maps of one prompt with the tokens' labels ("<encoder>:<piece>").

    ``positions`` are the tokens' indices in the conditioning sequence (maps may hold a subset of them).
    """

    prompt: str
    maps: torch.Tensor  # (tokens, H, W)
    labels: list[str]
    positions: list[int]
    special: frozenset[str] = frozenset()  # labels of special tokens (start/end/cls/sep) of each encoder

    def __post_init__(self) -> None:
        if not len(self.labels) == len(self.positions) == self.maps.shape[0]:
            raise ValueError(
                f"{len(self.labels)} labels and {len(self.positions)} positions for {self.maps.shape[0]} maps"
            )

    def keep(self, skip_padding: bool = True, skip_special: bool = True) -> list[int]:
        """Indices (into ``maps``) of the tokens worth drawing: not padding, not special tokens by default."""
        kept = []
        for i, label in enumerate(self.labels):
            if skip_padding and is_padding(label):
                continue
            if skip_special and label in self.special:
                continue
            kept.append(i)
        return kept


def is_padding(label: str) -> bool:
    return label.endswith(":<pad>")


def special_token_labels(conditioner) -> frozenset[str]:
    """Labels ("<encoder>:<piece>") of every encoder's special tokens, from its tokenizer."""
    labels = set()
    for spec, tokenizer in zip(conditioner.specs, conditioner.tokenizers):
        for token in getattr(tokenizer, "all_special_tokens", []):
            labels.add(f"{spec.name}:{token}")
    return frozenset(labels)


def token_attention(
    recorder: AttentionRecorder, index: int, prompt: str, conditioner=None, size=None, skip_padding: bool = True
) -> TokenAttention:
    """Maps of prompt ``index`` labelled by ``conditioner.token_labels(prompt)`` (or by position), resized to
    ``size``; padding positions are left out unless ``skip_padding`` is False (they make most of the 77)."""
    if conditioner is not None:
        labels = list(conditioner.token_labels(prompt))
        special = special_token_labels(conditioner) if hasattr(conditioner, "specs") else frozenset()
    else:
        run, _ = recorder._locate(index)
        count = next(iter(run.sums.values())).shape[-1]
        labels, special = [f"token:{i}" for i in range(count)], frozenset()
    positions = [i for i, label in enumerate(labels) if not (skip_padding and is_padding(label))]
    maps = recorder.token_maps(index, size=size, tokens=positions)
    return TokenAttention(prompt, maps.cpu(), [labels[i] for i in positions], positions, special)
