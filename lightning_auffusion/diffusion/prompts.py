"""Old home of the prompt files and ``PromptDataModule``, now :mod:`lightning_auffusion.data.prompts`.

Kept only because ``conf/predict/quickstart.yaml`` names ``lightning_auffusion.diffusion.prompts.PromptDataModule``
by class path; new configs and code use ``lightning_auffusion.data.prompts``.
"""

from lightning_auffusion.data.prompts import PromptDataModule

__all__ = ["PromptDataModule"]
