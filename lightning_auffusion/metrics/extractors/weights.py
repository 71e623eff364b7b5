"""Where the feature extractors' pretrained weights live, how they are checked, and the missing-weights error.

Every extractor names its file in ``WEIGHT_FILES``: the file (or folder) name, the address it is published
at, and a checksum where one is published. A file is looked for, in order, at an explicit path, in the
weights directory (``weights_dir`` argument, else ``$LIGHTNING_AUFFUSION_WEIGHTS``, else
``~/.cache/lightning_auffusion/weights``). Nothing is downloaded unless the caller asks for it
(``download=True``) and the process is online: ``LIGHTNING_AUFFUSION_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``
forbid every fetch. A file that is still missing ends in one ``MissingWeightsError`` that names the file,
where it goes and where to get it.

| key | file | address |
|---|---|---|
| ``cnn14_16k`` | ``Cnn14_16k_mAP=0.438.pth`` | https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth |
| ``vggish`` | ``vggish-10086976.pth`` | https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth |
| ``clap_htsat_unfused`` | folder ``clap-htsat-unfused/`` | https://huggingface.co/laion/clap-htsat-unfused |
| ``laion_clap_630k_audioset`` | ``630k-audioset-best.pt`` | https://huggingface.co/lukewys/laion_clap/resolve/main/630k-audioset-best.pt |
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

ENV_WEIGHTS_DIR = "LIGHTNING_AUFFUSION_WEIGHTS"
ENV_OFFLINE = "LIGHTNING_AUFFUSION_OFFLINE"
_TRUE = ("1", "true", "yes", "on")


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file is not where it should be and could not be fetched."""


class ChecksumError(ValueError):
    """A weight file exists but its checksum differs from the published one."""


@dataclass(frozen=True)
class WeightFile:
    """One published weight file (or, with ``is_dir``, a Hugging Face model folder)."""

    key: str
    filename: str
    url: str
    description: str
    sha256: str | None = None  # full hex digest or a prefix of it (torch hub names carry an 8-digit prefix)
    md5: str | None = None
    is_dir: bool = False
    hub_repo: str | None = None  # Hugging Face repository id for folders

    def default_path(self, weights_dir: str | os.PathLike | None = None) -> Path:
        return default_weights_dir(weights_dir) / self.filename


WEIGHT_FILES: dict[str, WeightFile] = {
    "cnn14_16k": WeightFile(
        key="cnn14_16k",
        filename="Cnn14_16k_mAP=0.438.pth",
        url="https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1",
        description="PANNs Cnn14 AudioSet tagger at 16 kHz (FD, KL, IS)",
        md5="362fc5ff18f1d6ad2f6d464b45893f2c",  # as listed on the Zenodo record
    ),
    "vggish": WeightFile(
        key="vggish",
        filename="vggish-10086976.pth",
        url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
        description="VGGish (torchvggish port of the TF model) for FAD",
        sha256="10086976",  # torch hub convention: the name carries the sha256 prefix
    ),
    "clap_htsat_unfused": WeightFile(
        key="clap_htsat_unfused",
        filename="clap-htsat-unfused",
        url="https://huggingface.co/laion/clap-htsat-unfused",
        description="CLAP (laion/clap-htsat-unfused = LAION 630k-audioset-best) for the CLAP score; "
        "a folder with config.json, the weights, tokenizer and preprocessor files",
        is_dir=True,
        hub_repo="laion/clap-htsat-unfused",
    ),
    "laion_clap_630k_audioset": WeightFile(
        key="laion_clap_630k_audioset",
        filename="630k-audioset-best.pt",
        url="https://huggingface.co/lukewys/laion_clap/resolve/main/630k-audioset-best.pt",
        description="laion-clap checkpoint for the optional laion_clap CLAP-score backend",
    ),
}


def default_weights_dir(weights_dir: str | os.PathLike | None = None) -> Path:
    """``weights_dir``, else ``$LIGHTNING_AUFFUSION_WEIGHTS``, else ``~/.cache/lightning_auffusion/weights``."""
    if weights_dir:
        return Path(weights_dir).expanduser()
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/lightning_auffusion/weights").expanduser()


def is_offline() -> bool:
    """True when ``LIGHTNING_AUFFUSION_OFFLINE`` or ``HF_HUB_OFFLINE`` forbids network access."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in (ENV_OFFLINE, "HF_HUB_OFFLINE"))


def missing_message(entry: WeightFile, expected: Path, reason: str = "") -> str:
    kind = "folder" if entry.is_dir else "file"
    lines = [
        f"Missing weight {kind} '{entry.filename}' ({entry.description}).",
        f"It goes here: {expected}",
        f"Download it from: {entry.url}",
        f"(or point --weights_dir / ${ENV_WEIGHTS_DIR} at the folder that holds it; "
        "download=True fetches it when online; allow_random_weights=True runs with random weights, "
        "whose numbers are not comparable with published ones).",
    ]
    if reason:
        lines.insert(1, reason)
    return "\n".join(lines)


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=16)
def _verified(path: str, size: int, mtime: float, sha256: str | None, md5: str | None) -> tuple[bool, str]:
    """(ok, message); cached per (path, size, mtime) so a file is hashed once per process."""
    p = Path(path)
    if sha256:
        got = _digest(p, "sha256")
        if not got.startswith(sha256.lower()):
            return False, f"sha256 {got} does not start with the published {sha256}"
    if md5:
        got = _digest(p, "md5")
        if got != md5.lower():
            return False, f"md5 {got} differs from the published {md5}"
    return True, ""


def verify_checksum(entry: WeightFile, path: str | os.PathLike) -> None:
    """Raise ``ChecksumError`` when ``path`` does not match ``entry``'s published checksum (folders: no check)."""
    p = Path(path)
    if entry.is_dir or not (entry.sha256 or entry.md5):
        return
    st = p.stat()
    ok, message = _verified(str(p.resolve()), st.st_size, st.st_mtime, entry.sha256, entry.md5)
    if not ok:
        raise ChecksumError(
            f"Weight file {p} failed its checksum: {message}. It is corrupt, truncated or a different file; "
            f"delete it and fetch it again from {entry.url} (or pass verify=False to use it anyway)."
        )


def _download_file(entry: WeightFile, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s to %s", entry.filename, entry.url, target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{entry.filename}.")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=60) as response:  # noqa: S310
            shutil.copyfileobj(response, out, length=1 << 20)
        verify_checksum(entry, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _download_folder(entry: WeightFile, target: Path) -> None:
    from huggingface_hub import snapshot_download

    log.info("downloading %s from the Hugging Face hub to %s", entry.hub_repo, target)
    snapshot_download(repo_id=entry.hub_repo, local_dir=str(target))


def locate_weights(
    key: str,
    path: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    download: bool = False,
    verify: bool = True,
) -> Path:
    """The verified local path of weight ``key``; fetch it when ``download`` and online, else raise.

    ``path`` names the file (or folder) explicitly; otherwise it is ``<weights_dir>/<filename>``.
    Raises ``MissingWeightsError`` (what is missing, where it goes, where to get it) or ``ChecksumError``.
    """
    if key not in WEIGHT_FILES:
        raise KeyError(f"unknown weight file {key!r}; known: {sorted(WEIGHT_FILES)}")
    entry = WEIGHT_FILES[key]
    target = Path(path).expanduser() if path else entry.default_path(weights_dir)
    present = target.is_dir() if entry.is_dir else target.is_file()
    if not present and download:
        if is_offline():
            raise MissingWeightsError(
                missing_message(entry, target, f"Not fetched: offline (${ENV_OFFLINE} or $HF_HUB_OFFLINE is set).")
            )
        try:
            (_download_folder if entry.is_dir else _download_file)(entry, target)
        except ChecksumError:
            raise
        except (OSError, ValueError, ImportError) as err:
            raise MissingWeightsError(missing_message(entry, target, f"Fetching failed: {err}")) from err
        present = target.is_dir() if entry.is_dir else target.is_file()
    if not present:
        raise MissingWeightsError(missing_message(entry, target))
    if verify:
        verify_checksum(entry, target)
    return target


def check_present(keys: list[str], weights_dir: str | os.PathLike | None = None, download: bool = False) -> None:
    """Raise one ``MissingWeightsError`` naming every missing file of ``keys`` (before any model is built)."""
    problems = []
    for key in keys:
        try:
            locate_weights(key, weights_dir=weights_dir, download=download, verify=False)
        except MissingWeightsError as err:
            problems.append(str(err))
    if len(problems) == 1:
        raise MissingWeightsError(problems[0])
    if problems:
        raise MissingWeightsError(f"{len(problems)} weight files are missing.\n\n" + "\n\n".join(problems))


@dataclass
class WeightStatus:
    """Which weights an extractor runs with; ``pretrained`` False means random initialisation."""

    name: str
    pretrained: bool
    path: str | None = None
    note: str = ""

    def describe(self) -> str:
        if self.pretrained:
            return f"{self.name}: pretrained weights from {self.path}"
        return f"{self.name}: RANDOM weights ({self.note})"


def resolve_or_random(
    key: str,
    name: str,
    path: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    download: bool = False,
    allow_random: bool = False,
) -> tuple[Path | None, WeightStatus]:
    """``locate_weights``; with ``allow_random`` a missing file gives ``(None, status)`` and a warning instead."""
    try:
        found = locate_weights(key, path=path, weights_dir=weights_dir, download=download)
    except MissingWeightsError as err:
        if not allow_random:
            raise
        first = str(err).splitlines()[0]
        log.warning(
            "%s -> %s runs with random weights; its numbers are not comparable with published ones", first, name
        )
        return None, WeightStatus(name, False, None, f"{WEIGHT_FILES[key].filename} not found")
    return found, WeightStatus(name, True, str(found))
