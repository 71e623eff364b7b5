"""Reading a W&B offline run (``wandb/offline-run-*/run-<id>.wandb``) without a server, for the dashboard.

The file is W&B's record log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of
chunks, each with a 7-byte header (CRC-32, length, type: full, first, middle, last) as in LevelDB's log
format; the assembled chunks are ``wandb_internal_pb2.Record`` protobuf messages. :func:`read_offline_run`
keeps the run's name and id, its config, its history as curves and its summary; media files are in the
run's ``files/media/``. A damaged tail (a run killed mid-write) ends the reading with what was read.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_records(path: Path):
    """The raw records (bytes) of a ``.wandb`` file."""
    data = path.read_bytes()
    if len(data) < HEADER.size or HEADER.unpack_from(data)[:2] != (b":W&B", 0xBEE1):
        raise ValueError(f"{path} is not a W&B run file")
    offset, pending = HEADER.size, b""
    while offset + CHUNK.size <= len(data):
        left = BLOCK - offset % BLOCK
        if left < CHUNK.size:  # the rest of the block is padding
            offset += left
            continue
        _, length, kind = CHUNK.unpack_from(data, offset)
        start = offset + CHUNK.size
        if kind not in (FULL, FIRST, MIDDLE, LAST) or start + length > len(data):
            return
        payload, offset = data[start : start + length], start + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        else:
            yield pending + payload
            pending = b""


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _without_media(values: dict[str, Any]) -> dict[str, Any]:
    """Drop the flattened fields of logged media objects (``audio/_type``, ``audio/path``, ...)."""
    media = tuple(k[: -len("_type")] for k in values if k.endswith("/_type"))
    return {k: v for k, v in values.items() if not (media and k.startswith(media))}


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """``{"id", "name", "config", "summary", "curves": {key: [(step, value)]}, "media_dir"}`` of one offline run."""
    from wandb.proto import wandb_internal_pb2

    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("run-*.wandb"))
    out: dict[str, Any] = {
        "id": run_dir.name.rsplit("-", 1)[-1],
        "name": None,
        "config": {},
        "summary": {},
        "curves": {},
        "media_dir": str(run_dir / "files" / "media"),
    }
    if not files:
        return out
    curves: dict[str, dict[int, float]] = {}
    try:
        for raw in iter_records(files[0]):
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(raw)
            except Exception as err:  # noqa: BLE001 - a damaged record ends nothing but itself
                log.debug("dashboard: %s: a record is unreadable (%s); skipped", files[0], err)
                continue
            kind = record.WhichOneof("record_type")
            if kind == "run":
                out["id"] = record.run.run_id or out["id"]
                out["name"] = record.run.display_name or out["name"]
                for item in record.run.config.update:
                    out["config"][_item_key(item)] = _value(item.value_json)
            elif kind == "config":
                for item in record.config.update:
                    out["config"][_item_key(item)] = _value(item.value_json)
            elif kind == "history":
                values = _without_media({_item_key(i): _value(i.value_json) for i in record.history.item})
                step = record.history.step.num if record.history.HasField("step") else values.get("_step")
                for key, value in values.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and not key.startswith("_"):
                        curves.setdefault(key, {})[int(step or 0)] = float(value)
            elif kind == "summary":
                update = _without_media({_item_key(i): _value(i.value_json) for i in record.summary.update})
                out["summary"].update(update)
    except (OSError, ValueError) as err:
        log.warning("dashboard: %s: %s (read what came before)", files[0], err)
    out["config"] = {
        k: (v.get("value", v) if isinstance(v, dict) else v) for k, v in out["config"].items() if not k.startswith("_")
    }
    out["curves"] = {k: sorted(v.items()) for k, v in curves.items()}
    return out
