"""Sweeps (W&B's sweep YAML, run locally or by W&B's controller) and the static dashboard comparing runs."""
