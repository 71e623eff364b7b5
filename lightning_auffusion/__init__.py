"""lightning_auffusion: train, evaluate and probe the Auffusion text-to-audio model with PyTorch Lightning."""

__version__ = "0.1.0"
