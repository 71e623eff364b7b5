import json

import pytest
import torch

from lightning_auffusion.audio.io import load_audio, save_wav
from lightning_auffusion.cli import main
from lightning_auffusion.vocoder import DiscriminatorConfig, load_hifigan_discriminators, load_vocoder
from lightning_auffusion.vocoder.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from tests.helpers import quiet_trainer

from .helpers import ToneDataModule, tone
from .test_module import make_module


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vocoder_run")
    torch.manual_seed(0)
    module = make_module()
    trainer = quiet_trainer(
        max_steps=1,
        limit_val_batches=0,
        default_root_dir=tmp,
    )
    trainer.fit(module, ToneDataModule(n_train=2, batch_size=2))
    trainer.save_checkpoint(tmp / "last.ckpt")
    return tmp / "last.ckpt", module


def test_export_vocoder_command_writes_both_formats(trained_checkpoint, tmp_path):
    ckpt, module = trained_checkpoint
    main(
        [
            "export-vocoder",
            "--checkpoint",
            str(ckpt),
            "--out_dir",
            str(tmp_path / "vocoder"),
            "--hifigan_file",
            str(tmp_path / "hifigan" / "g_00000001"),
            "--discriminator_file",
            str(tmp_path / "hifigan" / "do_00000001"),
        ]
    )
    assert json.loads((tmp_path / "vocoder" / "config.json").read_text())["upsample_rates"] == [5, 4, 2, 2, 2]
    assert list(torch.load(tmp_path / "vocoder" / "vocoder.pt", weights_only=True)) == ["generator"]
    mel = torch.randn(1, 256, 8)
    with torch.no_grad():
        expected = module.generator.eval()(mel)
        for source in (tmp_path / "vocoder", tmp_path / "hifigan" / "g_00000001"):
            assert torch.allclose(load_vocoder(source)(mel), expected, atol=1e-6)
    cfg = module.hparams.discriminators
    mpd, msd = MultiPeriodDiscriminator(DiscriminatorConfig(**cfg)), MultiScaleDiscriminator(DiscriminatorConfig(**cfg))
    assert load_hifigan_discriminators(mpd, msd, tmp_path / "hifigan" / "do_00000001")["steps"] == 1


def test_export_needs_a_target(trained_checkpoint):
    with pytest.raises(ValueError, match="nothing to export"):
        main(["export-vocoder", "--checkpoint", str(trained_checkpoint[0])])


def test_vocode_command_resynthesises_files(trained_checkpoint, tmp_path):
    save_wav(tmp_path / "in" / "a.wav", tone(4000, 330.0).numpy(), 16000)
    save_wav(tmp_path / "in" / "sub" / "b.wav", tone(8000, 220.0, sample_rate=22050).numpy(), 22050)  # resampled
    (tmp_path / "in" / "broken.wav").write_bytes(b"not audio")  # logged and skipped
    results = main(
        [
            "vocode",
            "--inputs",
            json.dumps([str(tmp_path / "in")]),
            "--vocoder",
            str(trained_checkpoint[0]),
            "--out_dir",
            str(tmp_path / "out"),
            "--griffin_lim",
            "true",
            "--griffin_lim_iters",
            "2",
        ]
    )
    assert set(results) == {"a", "b"}
    audio, sr = load_audio(tmp_path / "out" / "a.wav")
    assert sr == 16000 and len(audio) == 4000 // 160 * 160
    assert (tmp_path / "out" / "b_griffin_lim.wav").is_file()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["a"]) == {"source", "vocoder", "griffin_lim"} and metrics["a"]["vocoder"]["mrstft"] > 0
