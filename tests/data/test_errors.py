"""Errors name the settings they are about as tokens, which each front end renders in its own words."""

import pytest

from bcls.data.infra.errors import ConfigError, DataFormatError, render, setting, setting_is

FLAGS = {"lr": "--lr", "lam": "--lambda", "skip_empty": "--skip-empty", "kendall.gap": "--gap",
         "synonyms": "-o spice.synonyms"}


def test_python_words_and_flag_words_of_one_message():
    err = ConfigError(f"out of range: {setting_is('lr', -1.0)}, {setting_is('lam', 2)}; {setting('kendall.gap')} "
                      f"must be >= 0; pass {setting_is('skip_empty', True)} or {setting_is('synonyms', 'x.txt')}")
    assert str(err) == ("out of range: lr=-1.0, lam=2; kendall.gap must be >= 0; pass skip_empty=True or "
                        "synonyms=x.txt")
    assert err.render(FLAGS) == ("out of range: --lr -1.0, --lambda 2; --gap must be >= 0; pass --skip-empty or "
                                 "-o spice.synonyms=x.txt")


def test_a_setting_without_a_flag_keeps_its_python_spelling_and_wrapping_keeps_the_tokens():
    inner = DataFormatError(f"{setting('word_dim')} and {setting('lr')}")
    outer = ConfigError(f"cfg.json: {inner.raw}")
    assert outer.render(FLAGS) == "cfg.json: word_dim and --lr"
    assert render(outer.raw) == str(outer) == "cfg.json: word_dim and lr"


@pytest.mark.parametrize("text", ["no settings here", "brackets [x] and (y=1) stay"])
def test_plain_messages_are_unchanged(text):
    assert str(ConfigError(text)) == ConfigError(text).render(FLAGS) == text
