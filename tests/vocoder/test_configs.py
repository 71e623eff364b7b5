from pathlib import Path

import pytest

from lightning_auffusion.cli import AuffusionCLI
from lightning_auffusion.vocoder.module import VocoderModule

CONF = Path(__file__).resolve().parents[2] / "conf" / "vocoder"


@pytest.mark.parametrize("name", ["quickstart.yaml", "hifigan_v1.yaml"])
def test_vocoder_configs_build_the_module(name, tmp_path):
    overrides = [
        "--trainer.accelerator",
        "cpu",
        "--trainer.precision",
        "32-true",
        "--trainer.logger",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    cli = AuffusionCLI(args=["--config", str(CONF / name), *overrides], run=False)
    module = cli.model
    assert isinstance(module, VocoderModule)
    assert type(cli.datamodule).__name__ == "AudioShardDataModule"
    g = module.generator.config
    # Auffusion's mel settings; the quickstart uses HiFi-GAN V1's, the mel of the shipped pretrained generator
    expected = (22050, 80, 256) if name == "quickstart.yaml" else (16000, 256, 160)
    assert (g.sampling_rate, g.num_mels, g.hop_size) == expected
    assert module.hparams.segment_size % g.hop_size == 0
    if name == "hifigan_v1.yaml":
        assert g.upsample_initial_channel == 512 and g.resblock == "1"
        assert module.hparams.learning_rate == 2e-4 and module.hparams.mel_loss_weight == 45.0
        assert module.hparams.feature_loss_weight == 2.0 and list(module.hparams.adam_betas) == [0.8, 0.99]
        assert cli.datamodule.batch_size == 16
