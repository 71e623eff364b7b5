"""Data: caption manifests, WebDataset shards (``shard``), dataset statistics (``stats``) and the
streaming ``AudioShardDataModule`` (and ``LatentShardDataModule`` over ``encode``'s latent shards).

The ``stats`` command is ``lightning_auffusion.data.stats.stats`` (the submodule owns that name).

Names load from their submodule on first use (``lightning_auffusion._exports``).
"""

from lightning_auffusion._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "AudioShardDataModule": "datamodule",
        "LatentShardDataModule": "latents",
        "collate_latents": "latents",
        "ClipEntry": "manifest",
        "Manifest": "manifest",
        "ManifestConfig": "manifest",
        "normalize_caption": "manifest",
        "read_manifest": "manifest",
        "collate_clips": "pipeline",
        "expand_shards": "pipeline",
        "iterate_shard_samples": "pipeline",
        "shard_counts": "pipeline",
        "PromptDataModule": "prompts",
        "collect_prompts": "prompts",
        "shard": "shards",
        "compute_stats": "stats",
    },
)
