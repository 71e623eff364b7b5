"""Cross-attention capture, figures, prompt-to-prompt control and audio manipulations.

* ``AttentionRecorder`` (capture): record cross-attention probabilities of chosen U-Net layers.
* ``generate_with_attention_maps`` (recording): figures beside generated audio (``predict`` runs:
  ``lightning_auffusion.callbacks.attention_maps.AttentionMapWriter``).
* ``attention_figure`` (figures): the spectrogram with per-token heat maps.
* ``style_transfer``, ``inpaint``, ``word_swap``, ``reweight`` (manipulations): the paper's appendix E.

Names load from their submodule on first use (``lightning_auffusion._exports``).
"""

from lightning_auffusion._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "AttentionRecorder": "capture",
        "TokenAttention": "capture",
        "token_attention": "capture",
        "attention_figure": "figures",
        "ManipulationOutput": "manipulations",
        "inpaint": "manipulations",
        "reweight": "manipulations",
        "style_transfer": "manipulations",
        "word_swap": "manipulations",
        "generate_recording_attention": "recording",
        "generate_with_attention_maps": "recording",
    },
)
