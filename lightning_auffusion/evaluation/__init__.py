"""The ``evaluate`` subcommand, its audio sources and report writers."""

from lightning_auffusion.evaluation.command import evaluate, generate_folder
from lightning_auffusion.evaluation.report import build_report, markdown_report, write_report
from lightning_auffusion.evaluation.sources import list_audio, read_prompts

__all__ = [
    "build_report",
    "evaluate",
    "generate_folder",
    "list_audio",
    "markdown_report",
    "read_prompts",
    "write_report",
]
