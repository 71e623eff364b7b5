"""``encode`` (audio shards -> latent shards) and ``LatentShardDataModule``, on the tiny LDM."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lightning_auffusion.data.latents import LatentShardDataModule
from lightning_auffusion.data.pipeline import iterate_shard_samples
from lightning_auffusion.diffusion.encode import encode
from lightning_auffusion.diffusion.encoders import EncoderSpec, build_text_encoder
from lightning_auffusion.errors import UserInputError
from tests.helpers import single_torch_thread, tiny_ldm, tiny_spec, tiny_vae_config  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("single_torch_thread")
WINDOW = 0.64  # seconds: tiny_ldm's 64 mel frames = 16 latent frames (its VAE downsamples by 4)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    from lightning_auffusion.diffusion.unet_factory import build_vae

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vae")
    build_vae(tiny_vae_config()).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def clip_spec(tmp_path_factory):
    """A tiny CLIP text encoder saved to a folder, so the model and ``encode`` load the same weights."""
    spec = tiny_spec("clip")
    path = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    build_text_encoder(spec).save_pretrained(path)
    return EncoderSpec(name="clip", kind="clip", pretrained=str(path), tokenizer=spec.tokenizer)


@pytest.fixture(scope="module")
def model(vae_dir, clip_spec):
    return tiny_ldm(vae=vae_dir, encoders=[clip_spec])


def run_encode(shard_dir, out_root, model, vae_dir, **kwargs):
    options = dict(out_root=str(out_root), vae=vae_dir, mel=model.frontend.mel_config, n_frames=64,
                   encoders=model.conditioner.specs, device="cpu", progress=False)
    options.update(kwargs)
    return encode(str(shard_dir), "toy_latents", **options)


@pytest.fixture(scope="module")
def latent_dir(shard_dir, tmp_path_factory, model, vae_dir):
    out_root = tmp_path_factory.mktemp("latents")
    run_encode(shard_dir, out_root, model, vae_dir, text_embeddings=True)
    return out_root / "toy_latents"


def test_encode_writes_posteriors_captions_text_and_fingerprints(latent_dir, shard_dir, model):
    index = json.loads((latent_dir / "index.json").read_text())
    assert index["complete"] and index["latent_downsampling"] == 4
    assert index["fingerprint"]["latent"] == model.latent_fingerprint
    assert index["totals"]["clips"] == sum(1 for _ in iterate_shard_samples(str(shard_dir)))
    import webdataset as wds

    sample = next(iter(wds.WebDataset(str(latent_dir / "toy_latents-000000.tar"), shardshuffle=False)))
    posterior = np.load(__import__("io").BytesIO(sample["posterior.npy"]))
    record = json.loads(sample["json"])
    assert posterior.dtype == np.float16 and posterior.shape[:2] == (8, 16)  # 2 x 4 channels, 64 mels / 4
    assert posterior.shape[-1] == record["latent_frames"] >= 16
    assert record["captions"] and record["latent_fingerprint"] == model.latent_fingerprint
    assert np.load(__import__("io").BytesIO(sample["text_clip.npy"])).shape == (len(record["captions"]), 77, 32)


def test_a_clip_within_the_window_has_the_audio_paths_posterior(shard_dir, tmp_path, vae_dir):
    model = tiny_ldm(vae=vae_dir, n_frames=400)  # 4 s: every toy clip fits, so it is padded, never cropped
    run_encode(shard_dir, tmp_path, model, vae_dir, n_frames=400)
    dm = LatentShardDataModule(val_shards=str(tmp_path / "toy_latents"), val_batch_size=1, num_workers=0,
                               val_segment_seconds=4.0)
    clips = {c["key"]: c for c in iterate_shard_samples(str(shard_dir))}
    checked = 0
    for batch in dm.val_dataloader():
        clip = clips[batch["key"][0]]
        audio = torch.zeros(1, 64000)
        audio[0, : clip["audio"].shape[0]] = torch.from_numpy(clip["audio"])
        expected = model.posterior_parameters(model.images_from_audio(audio))
        assert batch["complete"].all() and batch["posterior"].shape == expected.shape
        torch.testing.assert_close(batch["posterior"].float(), expected, atol=2e-3, rtol=2e-3)  # float16 storage
        checked += 1
    assert checked == len(clips)


def test_training_batches_crop_in_latent_frames_and_train(latent_dir, model):
    dm = LatentShardDataModule(train_shards=str(latent_dir), val_shards=str(latent_dir), batch_size=2, num_workers=0,
                               segment_seconds=WINDOW, val_segment_seconds=WINDOW, batches_per_epoch=3)
    assert dm.latent_frames(WINDOW) == 16
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    for batch in batches:
        assert batch["posterior"].shape == (2, 8, 16, 16) and set(batch["text"]) == {"clip"}
        assert torch.isfinite(model.diffusion_loss(batch))
    val = next(iter(dm.val_dataloader()))
    assert torch.isfinite(model.diffusion_loss(val, generator=model.validation_generators(val, 0), drop=False))
    with pytest.raises(UserInputError, match="multiple of the VAE's downsampling"):
        dm.latent_frames(0.65)


def test_stored_text_outputs_replace_the_encoder(latent_dir, model, vae_dir, caplog):
    dm = LatentShardDataModule(val_shards=str(latent_dir), val_batch_size=2, num_workers=0, val_segment_seconds=WINDOW)
    batch = next(iter(dm.val_dataloader()))
    assert set(model.precomputed_text(batch)) == {"clip"}
    assert tiny_ldm(vae=vae_dir).precomputed_text(batch) is None  # other encoder weights: recomputed, with a warning
    assert "do not match this model's encoders" in caplog.text
    stored = model.conditioner(batch["caption"], precomputed=model.precomputed_text(batch))
    fresh = model.conditioner(batch["caption"])
    torch.testing.assert_close(stored, fresh, atol=5e-3, rtol=5e-3)


def test_a_shard_of_another_vae_is_refused_with_one_line(latent_dir):
    other = tiny_ldm(seed=1)  # random VAE weights: another fingerprint
    dm = LatentShardDataModule(val_shards=str(latent_dir), val_batch_size=2, num_workers=0, val_segment_seconds=WINDOW)
    with pytest.raises(UserInputError, match="encoded with another VAE or front end") as info:
        other.diffusion_loss(next(iter(dm.val_dataloader())), drop=False)
    assert "\n" not in str(info.value)


def test_ranks_split_the_shards_and_a_rerun_resumes(shard_dir, tmp_path, model, vae_dir):
    first = run_encode(shard_dir, tmp_path, model, vae_dir, rank=1, world_size=2)
    assert not first["complete"] and [s["shard"] for s in first["shards"]] == [1]
    out = tmp_path / "toy_latents"
    stamp = (out / "toy_latents-000001.tar").stat().st_mtime_ns
    done = run_encode(shard_dir, tmp_path, model, vae_dir, rank=0, world_size=2)
    assert done["complete"] and [s["shard"] for s in done["shards"]] == [0, 1, 2]
    again = run_encode(shard_dir, tmp_path, model, vae_dir)  # one rank: everything already there
    assert again["complete"] and (out / "toy_latents-000001.tar").stat().st_mtime_ns == stamp
    assert not list(out.glob("*.partial"))
    with pytest.raises(UserInputError, match="another VAE"):
        run_encode(shard_dir, tmp_path, model, vae_dir, vae=tiny_vae_config())
    with pytest.raises(UserInputError, match="rank"):
        run_encode(shard_dir, tmp_path, model, vae_dir, rank=2, world_size=2)
