"""A CLAP (contrastive audio-text) model trained on the project's own shards, for offline experiments.

AudioLDM-style conditioning (encoder kind ``clap_audio``) needs a joint audio-text space: online that is
``laion/clap-htsat-unfused``; offline, or on a task of its own such as the synthetic one, ``ClapPretraining``
trains a transformers ``ClapModel`` on captioned clips and ``export-clap`` writes it as a folder that
``pretrained`` of a ``clap_audio`` encoder (and the CLAP score's weights) load.
"""
