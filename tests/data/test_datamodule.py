"""AudioShardDataModule: round trip, exact-once evaluation, equal batches per rank, patterns, errors."""

from __future__ import annotations

import io
import json
import logging
import tarfile

import numpy as np
import pytest
import torch

from lightning_auffusion.data.datamodule import AudioShardDataModule
from lightning_auffusion.data.pipeline import expand_shards, iterate_shard_samples

from .conftest import SR, VALID
from tests.helpers import quiet_trainer


def keys_of(batches):
    return [k for b in batches for k in b["key"]]


def make_dm(shard_dir, **kwargs):
    defaults = dict(train_shards=str(shard_dir / "index.json"), val_shards=str(shard_dir / "index.json"),
                    batch_size=2, num_workers=0, segment_seconds=1.0, val_segment_seconds=None, seed=0)
    defaults.update(kwargs)
    return AudioShardDataModule(**defaults)


def test_round_trip_returns_every_valid_clip_with_captions(shard_dir):
    reference = {c["key"]: c for c in iterate_shard_samples(str(shard_dir / "index.json"))}
    assert {c["metadata"]["source"] for c in reference.values()} == set(VALID)
    batches = list(make_dm(shard_dir).val_dataloader())
    assert sorted(keys_of(batches)) == sorted(reference)
    for batch in batches:
        assert batch["audio"].dtype == torch.float32 and batch["num_samples"].dtype == torch.long
        for i, key in enumerate(batch["key"]):
            ref = reference[key]
            n = int(batch["num_samples"][i])
            assert n == ref["audio"].shape[0]
            np.testing.assert_array_equal(batch["audio"][i, :n].numpy(), ref["audio"])
            assert torch.all(batch["audio"][i, n:] == 0)  # padding is silence
            assert batch["captions"][i] == ref["captions"]
            assert batch["caption"][i] == ref["captions"][0]  # evaluation: the first caption


@pytest.mark.parametrize("mode", ["sample", "shard"])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_evaluation_split_over_ranks_sees_every_clip_once_in_stable_order(shard_dir, mode, num_workers):
    everything = sorted(c["key"] for c in iterate_shard_samples(str(shard_dir)))
    seen = []
    for rank in range(2):
        dm = make_dm(shard_dir, rank=rank, world_size=2, num_workers=num_workers, eval_split=mode,
                     val_segment_seconds=0.5, persistent_workers=False)
        loader = dm.val_dataloader()
        first, second = list(loader), list(loader)
        assert keys_of(first) == keys_of(second)  # stable order
        assert len(first) == len(loader)  # the announced length is right
        assert all(b["audio"].shape[1] == SR // 2 for b in first)
        seen += keys_of(first)
    assert sorted(seen) == everything  # exactly once over both ranks


def test_sample_split_is_balanced_with_known_counts(shard_dir):
    sizes = [len(keys_of(make_dm(shard_dir, rank=r, world_size=3, val_batch_size=1).val_dataloader())) for r in range(3)]
    assert sorted(sizes) == [2, 3, 3] and sum(sizes) == len(VALID)


def test_more_ranks_than_shards_in_shard_mode(shard_dir):
    seen = []
    for rank in range(6):
        loader = make_dm(shard_dir, rank=rank, world_size=6, eval_split="shard").val_dataloader()
        seen += keys_of(loader)
    assert len(seen) == len(VALID) and len(set(seen)) == len(VALID)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_training_gives_equal_batch_counts_per_rank(shard_dir, num_workers):
    counts = []
    for rank in range(2):
        dm = make_dm(shard_dir, rank=rank, world_size=2, num_workers=num_workers, batches_per_epoch=7,
                     shuffle_buffer=4, shuffle_initial=2, persistent_workers=False)
        loader = dm.train_dataloader()
        batches = list(loader)
        counts.append((len(loader), len(batches)))
        for batch in batches:
            assert batch["audio"].shape == (2, SR) and batch["num_samples"].shape == (2,)
            assert set(batch) == {"audio", "num_samples", "caption", "captions", "key", "complete"}
            for i in range(2):
                assert batch["caption"][i] in batch["captions"][i]
                assert 0 < batch["num_samples"][i] <= SR
                assert torch.all(batch["audio"][i, int(batch["num_samples"][i]):] == 0)
    assert counts == [(7, 7), (7, 7)]


def test_batches_per_epoch_defaults_to_clip_count_from_index(shard_dir):
    dm = make_dm(shard_dir, world_size=2, rank=1)
    assert len(dm.train_dataloader()) == len(VALID) // (2 * 2)
    with pytest.raises(ValueError, match="no clips"):
        make_dm(shard_dir, train_shards=str(shard_dir / "toy-00000[34].tar"), batches_per_epoch=2).train_dataloader()
    with pytest.raises(ValueError, match="batches_per_epoch"):
        make_dm(shard_dir, train_shards=f"pipe:cat {shard_dir}/toy-000000.tar").train_dataloader()


def test_training_crops_and_captions_are_random_but_seeded(shard_dir):
    def crops(seed, rank=0, epochs=1):
        dm = make_dm(shard_dir, train_shards=str(shard_dir / "toy-000002.tar"), seed=seed, rank=rank, world_size=2,
                     batches_per_epoch=8, batch_size=1, segment_seconds=0.25)
        loader = dm.train_dataloader()
        return [(b["key"][0], b["caption"][0], b["audio"][0, :50].numpy().tobytes()) for _ in range(epochs) for b in loader]

    first = crops(1, epochs=2)
    assert crops(1, epochs=2) == first  # reproducible for a seed
    assert first[:8] != first[8:]  # the next epoch draws new crops
    assert crops(2) != first[:8] and crops(1, rank=1) != first[:8]
    assert len({audio for _, _, audio in first}) > 4  # random windows
    assert len({caption for _, caption, _ in first}) > 2  # random captions


def test_shard_patterns(shard_dir):
    all_tars = sorted(str(p) for p in shard_dir.glob("*.tar"))
    assert expand_shards(str(shard_dir / "toy-*.tar")) == all_tars
    assert expand_shards(str(shard_dir / "toy-{000000..000004}.tar")) == all_tars
    assert expand_shards(str(shard_dir / "index.json")) == all_tars[:3]  # the empty shards are left out
    assert expand_shards(str(shard_dir)) == all_tars[:3]
    assert expand_shards([all_tars[1], all_tars[0]]) == [all_tars[1], all_tars[0]]
    assert expand_shards(f"{all_tars[0]}::{all_tars[2]}") == [all_tars[0], all_tars[2]]
    with pytest.raises(FileNotFoundError, match="matches no file"):
        expand_shards(str(shard_dir / "nope-*.tar"))
    with pytest.raises(FileNotFoundError, match="not found"):
        expand_shards(str(shard_dir / "toy-{000003..000009}.tar"))


def test_pipe_urls_stream_like_object_storage(shard_dir):
    urls = [f"pipe:cat {shard_dir}/toy-{i:06d}.tar" for i in range(3)]
    dm = make_dm(shard_dir, val_shards=urls, train_shards=urls, batches_per_epoch=3)
    assert sorted(keys_of(dm.val_dataloader())) == sorted(c["key"] for c in iterate_shard_samples(str(shard_dir)))
    assert len(list(dm.train_dataloader())) == 3


def _member(key, ext, data):
    info = tarfile.TarInfo(f"{key}.{ext}")
    info.size = len(data)
    return info, io.BytesIO(data)


def test_corrupt_members_are_logged_and_skipped(shard_dir, tmp_path, caplog):
    with tarfile.open(shard_dir / "toy-000000.tar") as tar:
        good = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    record = good["good_a.json"]
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        for key, ext, data in [
            ("good_a", "flac", good["good_a.flac"]), ("good_a", "json", record),
            ("broken", "flac", b"fLaC but then nonsense" * 10), ("broken", "json", record),
            ("nojson", "flac", good["good_b.flac"]),
            ("badjson", "flac", good["good_b.flac"]), ("badjson", "json", b"{not json"),
            ("nocaption", "flac", good["good_b.flac"]), ("nocaption", "json", json.dumps({"captions": []}).encode()),
            ("stereo", "flac", good["stereo.flac"]), ("stereo", "json", good["stereo.json"]),
        ]:
            tar.addfile(*_member(key, ext, data))
    truncated = tmp_path / "truncated.tar"
    data = (shard_dir / "toy-000001.tar").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    dm = make_dm(shard_dir, val_shards=[str(bad), str(truncated)], train_shards=[str(bad), str(truncated)],
                 batches_per_epoch=4)
    with caplog.at_level(logging.DEBUG, logger="lightning_auffusion.data.pipeline"):
        keys = keys_of(dm.val_dataloader())
        train = list(dm.train_dataloader())
    assert keys[:2] == ["good_a", "stereo"] and set(keys) <= {"good_a", "stereo", "rate48k", "eight_bit", "long"}
    assert len(train) == 4 and set(keys_of(train)) <= set(keys)
    messages = " ".join(r.getMessage() for r in caplog.records)
    for key in ("broken", "nojson", "badjson", "nocaption"):
        assert f"key={key}" in messages or f"'{key}'" in messages, key


def test_missing_configuration_is_a_clear_error(shard_dir):
    dm = AudioShardDataModule(val_shards=str(shard_dir))
    with pytest.raises(ValueError, match="train_shards is not set"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="eval_split"):
        AudioShardDataModule(eval_split="random")
    with pytest.raises(ValueError, match="rank"):
        make_dm(shard_dir, rank=2, world_size=2).val_dataloader()
    assert AudioShardDataModule(train_shards=str(shard_dir)).val_dataloader() == []


def test_fit_with_lightning(shard_dir, tmp_path):
    import lightning.pytorch as pl

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.seen = {"train": 0, "val": []}

        def training_step(self, batch, _):
            self.seen["train"] += 1
            return (self.weight * batch["audio"].mean()).sum() + self.weight.square().sum()

        def validation_step(self, batch, _):
            self.seen["val"] += batch["key"]

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Probe()
    dm = make_dm(shard_dir, batches_per_epoch=3)
    trainer = quiet_trainer(max_epochs=1, devices=1, default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    assert model.seen["train"] == 3
    assert sorted(model.seen["val"]) == sorted(c["key"] for c in iterate_shard_samples(str(shard_dir)))
    assert dm.rank_and_world() == (0, 1)


def test_batches_at_another_sample_rate_are_resampled(shard_dir):
    dm = make_dm(shard_dir, sample_rate=8000, val_segment_seconds=1.0)
    batch = next(iter(dm.val_dataloader()))
    assert batch["audio"].shape == (2, 8000)
    clips = {c["key"]: c for c in iterate_shard_samples(str(shard_dir), sample_rate=8000)}
    first = clips[batch["key"][0]]
    assert first["sample_rate"] == 8000
    n = int(batch["num_samples"][0])
    # equal except within the resampling filter's reach of the window's end (cut before resampling)
    np.testing.assert_allclose(batch["audio"][0, : n - 64].numpy(), first["audio"][: n - 64], atol=1e-5)
