"""Every Python block of the docs pages runs as it is written (each prints its result); the plug-ins a block
registers are removed afterwards, so the blocks leave the registries as they found them."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = {"python_api.md": 3, "extending.md": 5}


def _snippets(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


def _registries():
    from bcls.data.captions import CAPTION_FORMATS
    from bcls.pipeline.sources import LABEL_SOURCES
    from bcls.trainer.batches import SAMPLERS
    from bcls.trainer.losses import BINARY_LOSSES
    from bcls.trainer.models import MODELS

    return (CAPTION_FORMATS, LABEL_SOURCES, SAMPLERS, BINARY_LOSSES, MODELS)


def test_every_page_with_python_blocks_is_run():
    pages = {p.name for p in DOCS.glob("*.md") if "```python" in p.read_text()}
    assert pages == set(PAGES)
    assert {page: len(_snippets(page)) for page in PAGES} == PAGES


@pytest.mark.parametrize("page, index", [(page, i) for page, n in PAGES.items() for i in range(n)])
def test_snippet_runs(page, index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BCLS_CACHE_DIR", str(tmp_path / "cache"))
    before = {id(r): set(r.names()) for r in _registries()}
    try:
        exec(compile(_snippets(page)[index], f"docs/{page} block {index + 1}", "exec"), {"__name__": "__docs__"})
    finally:
        for registry in _registries():
            for name in set(registry.names()) - before[id(registry)]:
                registry.unregister(name)
    assert capsys.readouterr().out.strip()  # each block prints its result
