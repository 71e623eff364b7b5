"""The ``evaluate`` subcommand, its audio sources and report writers.

Names load from their submodule on first use (``lightning_auffusion._exports``).
"""

from lightning_auffusion._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "evaluate": "command",
        "generate_folder": "command",
        "build_report": "report",
        "markdown_report": "report",
        "write_report": "report",
        "list_audio": "sources",
        "read_prompts": "sources",
    },
)
