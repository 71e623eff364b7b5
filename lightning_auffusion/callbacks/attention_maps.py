"""``AttentionMapWriter``: the ``predict`` callback writing each clip's cross-attention figure
(``<index>_<slug>_attention.png``) beside the WAV that ``AudioPredictionWriter`` writes."""

from __future__ import annotations

import os
from collections.abc import Sequence

from lightning.pytorch import Callback

from lightning_auffusion.attention.capture import DEFAULT_RESOLUTIONS, AttentionRecorder, token_attention
from lightning_auffusion.attention.recording import recorder_for_run, write_attention_figure
from lightning_auffusion.diffusion.pipeline import AuffusionPipeline


class AttentionMapWriter(Callback):
    """``predict`` callback: records each batch's cross-attention and writes ``<index>_<slug>_attention.png``.

    Sits beside ``AudioPredictionWriter`` (same ``output_dir``, same file numbering from the batch's
    ``index``), so a ``predict`` run writes the attention figure next to each WAV. The recorder is on only
    between ``on_predict_batch_start`` and ``on_predict_batch_end``; the generated audio is unchanged.

    Args:
        output_dir: folder for the figures (the prediction writer's folder).
        resolutions: downsampling factors whose cross-attention layers are recorded.
        layers: optional layer-name substrings to keep.
        skip_padding: leave padding tokens out of the figures.
        skip_special: leave start/end/separator tokens out of the figures.
        max_tokens: tokens drawn per figure.
        dpi: PNG resolution.
    """

    def __init__(
        self,
        output_dir: str = "outputs/predict",
        resolutions: Sequence[int] | None = DEFAULT_RESOLUTIONS,
        layers: Sequence[str] | None = None,
        skip_padding: bool = True,
        skip_special: bool = True,
        max_tokens: int = 24,
        dpi: int = 100,
    ) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.resolutions = tuple(resolutions) if resolutions is not None else None
        self.layers = list(layers) if layers is not None else None
        self.figure_kwargs = dict(skip_padding=skip_padding, skip_special=skip_special, max_tokens=max_tokens)
        self.dpi = dpi
        self._recorder: AttentionRecorder | None = None

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        pipeline = AuffusionPipeline.from_module(pl_module, use_ema=False)  # shares the module's U-Net
        sampling = dict(getattr(pl_module, "sampling", None) or {})
        self._recorder = recorder_for_run(pipeline, sampling, self.resolutions, self.layers).__enter__()

    def _stop(self) -> AttentionRecorder | None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.__exit__(None, None, None)
        return recorder

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        recorder = self._stop()
        if recorder is None or outputs is None or not hasattr(outputs, "image"):
            return
        prompts = list(getattr(outputs, "prompts", None) or batch["prompt"])
        indices = batch.get("index") if isinstance(batch, dict) else None
        indices = [int(i) for i in indices] if indices is not None else list(range(len(prompts)))
        os.makedirs(self.output_dir, exist_ok=True)
        size = tuple(outputs.image.shape[-2:])
        for row, (index, prompt) in enumerate(zip(indices, prompts)):
            attention = token_attention(recorder, row, prompt, pl_module.conditioner, size=size)
            write_attention_figure(
                attention, outputs.image[row], self.output_dir, index, dpi=self.dpi, **self.figure_kwargs
            )

    def on_predict_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._stop()
