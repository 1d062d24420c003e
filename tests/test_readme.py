"""The snippets of docs/python_api.md run as they are written."""

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "python_api.md"


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_section_has_three_snippets():
    assert len(_snippets()) == 3


@pytest.mark.parametrize("index", range(3))
def test_snippet_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BCLS_CACHE_DIR", str(tmp_path / "cache"))
    exec(compile(_snippets()[index], f"docs/python_api.md snippet {index + 1}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.strip()  # each snippet prints its result
