"""The PTB-like tokeniser of the ``cider`` source: coco-caption's Stanford ``PTBTokenizer`` and punctuation filter,
without Java, one text at a time (:func:`ptb_tokenize`) or many at once as word ids (:func:`ptb_token_ids`)."""

from __future__ import annotations

import functools
import itertools
import re
from typing import Sequence

import numpy as np

#: Tokens that coco-caption's ``PTBTokenizer`` drops after tokenising (``pycocoevalcap/tokenizer/ptbtokenizer.py``),
#: plus their lower-case forms (the Java tokenizer runs with ``-lowerCase``).
PTB_PUNCTUATIONS: frozenset[str] = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";",
     "-lrb-", "-rrb-", "-lcb-", "-rcb-"])

_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
_CLITIC_RE = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_SUBS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r'"'), " '' "),                       # a double quote becomes `` or '' in PTB: dropped
    (re.compile(r"\.\.\.+"), " ... "),                # ellipsis
    (re.compile(r"--+"), " -- "),                     # dashes
    (re.compile(r"[;!?()\[\]{}`]"), r" \g<0> "),      # always split off (brackets: escaped, then dropped)
    # commas and colons, not between two digits (1,000, 10:30); written as "not (digit before and digit after)"
    # rather than "no digit after or no digit before" so that the engine scans for the literal first (much faster)
    (re.compile(r",(?!(?<=\d,)\d)"), " , "),
    (re.compile(r":(?!(?<=\d:)\d)"), " : "),
)
_BRACKETS = frozenset("()[]{}")


def ptb_tokenize(text: str) -> str:
    """Lower-case ``text`` and tokenise it like coco-caption's Stanford ``PTBTokenizer`` followed by its
    punctuation filter, without Java; return the tokens joined by single spaces.

    Punctuation is split off and dropped (``. , ! ? ; : " ' ` ( ) [ ] { } - -- ...``), clitics are split as PTB does
    (``dog's`` → ``dog 's``, ``don't`` → ``do n't``, ``cannot`` → ``can not``), hyphenated words, numbers
    (``3.5``, ``1,000``, ``10:30``) and dotted abbreviations (``u.s.``) stay whole. Already-tokenised text
    (e.g. the Karpathy COCO captions) passes unchanged apart from the dropped punctuation and lower-casing.
    Brackets: PTB escapes them as ``-LRB-`` etc.; all brackets are dropped here. Matches PTB on ordinary captions,
    not on every corner of its lexer (URLs, emoticons, abbreviations such as ``mr.``). Many texts at once:
    :func:`ptb_token_ids` (the same tokens, much faster).
    """
    text = text.lower()
    for pattern, repl in _SUBS:
        text = pattern.sub(repl, text)
    return " ".join(t for tok in text.split() for t in _split_token(tok))


def _split_token(tok: str) -> tuple[str, ...]:
    """The output tokens of one whitespace token of :func:`ptb_tokenize` (after its substitutions): clitics and
    quotes split off, punctuation dropped."""
    if "'" not in tok and "." not in tok and tok not in PTB_PUNCTUATIONS and tok not in _BRACKETS \
            and tok != "cannot":
        return (tok,)  # a plain word (most tokens)
    if tok in _CLITICS or tok in PTB_PUNCTUATIONS:
        out = [tok]
    else:
        out = []
        while tok.startswith("'") and tok not in _CLITICS and len(tok) > 1:
            out.append("'")
            tok = tok[1:]
        trail = []
        while tok.endswith("'") and len(tok) > 1:
            trail.append("'")
            tok = tok[:-1]
        if tok.endswith(".") and len(tok) > 1 and "." not in tok[:-1]:  # a word's final period (not u.s.)
            trail.append(".")
            tok = tok[:-1]
            while tok.endswith("'") and len(tok) > 1:
                trail.append("'")
                tok = tok[:-1]
        if tok == "cannot":
            out.extend(("can", "not"))
        elif (m := _CLITIC_RE.match(tok)) is not None:
            out.extend((m.group(1), m.group(2)))
        else:
            out.append(tok)
        out.extend(trail)
    return tuple(t for t in out if t not in PTB_PUNCTUATIONS and t not in _BRACKETS)


_SEPARATOR = "\x00"  # between texts in ptb_token_ids: not whitespace, so it stays a token of its own


def ptb_token_ids(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:func:`ptb_tokenize` of many texts at once, as integer word ids.

    The texts are joined into one string, lower-cased and substituted in one pass per pattern, split once by a numba
    loop (:func:`_distinct_tokens`), and each *distinct* whitespace token is split into output tokens once (a corpus of
    600k captions has about 30k); the same tokens as :func:`ptb_tokenize` text by text (a test holds them equal on real
    captions), several times faster (docs/benchmarks.md, "Measurements behind the code"). Texts that hold the separator
    character (NUL) fall back to the per-text path.

    Returns:
        ``(ids int64 (T,), n_words int64 (N,), words)``: the word ids of every text one after another, the
        number of tokens per text, and the word of each id.
    """
    texts = list(texts)
    if not texts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), []
    big = f" {_SEPARATOR} ".join(texts)
    if big.count(_SEPARATOR) != max(len(texts) - 1, 0):  # a text holds the separator: tokenise one by one
        tokens = [ptb_tokenize(t).split() for t in texts]
        seen: dict[str, int] = {}
        ids = np.fromiter((seen.setdefault(w, len(seen)) for seq in tokens for w in seq), dtype=np.int64)
        return ids, np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens)), list(seen)
    big = big.lower()
    for pattern, repl in _SUBS:
        big = pattern.sub(repl, big)
    tok, distinct = _distinct_tokens(big)
    # each distinct token -> its output word ids (CSR), expanded over the text at once
    vocab: dict[str, int] = {}
    split: list[tuple[int, ...]] = []
    for t in distinct:
        if t == _SEPARATOR:
            split.append((-1,))
            continue
        out = _split_token(t)
        split.append((vocab.setdefault(out[0], len(vocab)),) if len(out) == 1  # most tokens: one word
                     else tuple(vocab.setdefault(w, len(vocab)) for w in out))
    lens = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
    words = np.fromiter(itertools.chain.from_iterable(split), dtype=np.int64, count=int(lens.sum()))
    starts = np.cumsum(lens) - lens
    n_out = lens[tok]
    flat = words[np.repeat(starts[tok] - np.cumsum(n_out) + n_out, n_out) + np.arange(int(n_out.sum()))]
    bounds = np.concatenate(([-1], np.flatnonzero(flat < 0), [len(flat)]))
    return flat[flat >= 0], np.diff(bounds) - 1, list(vocab)


def _distinct_tokens(big: str) -> tuple[np.ndarray, list[str]]:
    """``big.split()`` as ids: int64 ``(T,)`` the id of each whitespace token and the distinct tokens, numbered
    by descending last occurrence (the numbering of the dict-based code this replaced, so word ids, and with them
    the n-gram tables, are unchanged). A numba loop over the UTF-8 bytes finds and hashes the tokens (several
    times faster than splitting into a list of strings and a dict); other whitespace than ASCII is made a space first,
    so that the bytes split where ``str.split`` does."""
    if not big.isascii():
        big = re.sub(r"\s", " ", big)  # str.split's whitespace is re's \s on str (both Py_UNICODE_ISSPACE)
    data = np.frombuffer(big.encode("utf-8"), dtype=np.uint8)
    n_max = len(data) // 2 + 1  # tokens are separated by at least one byte (pages are touched only as used)
    tok, start, end, last, hashes = (np.empty(n_max, np.int64) for _ in range(5))
    n_tok, n_distinct = _token_kernel()(data, tok, start, end, last, hashes)
    rank = np.empty(n_distinct, dtype=np.int64)
    by_last = np.argsort(-last[:n_distinct])
    rank[by_last] = np.arange(n_distinct, dtype=np.int64)
    raw = data.tobytes()
    return rank[tok[:n_tok]], [raw[start[d]:end[d]].decode("utf-8") for d in by_last.tolist()]


@functools.cache
def _token_kernel():
    """:func:`_tokens` compiled by numba (``nogil``, on-disk cache), imported on first use."""
    import numba

    return numba.njit(nogil=True, cache=True)(_tokens)


def _tokens(data, tok, start, end, last, hashes):  # pragma: no cover (compiled; tested through ptb_token_ids)
    """Split ``data`` at ASCII whitespace; number the tokens by first occurrence (FNV-1a hash, open addressing,
    byte comparison on collision, the table doubled whenever it is half full); ``start`` / ``end`` of each
    distinct token's first occurrence, ``last`` the index of its last, ``hashes`` its hash."""
    size = 1 << 16
    table = np.full(size, -1, np.int64)
    n_tok = 0
    n_distinct = 0
    i = 0
    n = len(data)
    while True:
        while i < n and (data[i] == 32 or 9 <= data[i] <= 13):
            i += 1
        if i >= n:
            break
        a = i
        h = np.uint64(14695981039346656037)
        while i < n and not (data[i] == 32 or 9 <= data[i] <= 13):
            h = (h ^ np.uint64(data[i])) * np.uint64(1099511628211)
            i += 1
        s = np.int64(h >> np.uint64(20)) & (size - 1)
        while True:
            d = table[s]
            if d == -1:
                table[s] = n_distinct
                start[n_distinct] = a
                end[n_distinct] = i
                hashes[n_distinct] = np.int64(h >> np.uint64(20))
                tok[n_tok] = n_distinct
                last[n_distinct] = n_tok
                n_distinct += 1
                if 2 * n_distinct > size:  # grow: reinsert every distinct token into a table twice as large
                    size *= 2
                    table = np.full(size, -1, np.int64)
                    for e in range(n_distinct):
                        t = hashes[e] & (size - 1)
                        while table[t] != -1:
                            t = (t + 1) & (size - 1)
                        table[t] = e
                break
            if end[d] - start[d] == i - a:
                same = True
                for j in range(i - a):
                    if data[start[d] + j] != data[a + j]:
                        same = False
                        break
                if same:
                    tok[n_tok] = d
                    last[d] = n_tok
                    break
            s = (s + 1) & (size - 1)
        n_tok += 1
    return n_tok, n_distinct
