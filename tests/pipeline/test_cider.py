"""The ``cider`` label source: CIDEr-D against coco-caption's CiderScorer, leave-one-out, tokenizer, hand examples."""

import collections
import json
import math
from collections import defaultdict

import numpy as np
import pytest

from bcls.data.infra.errors import ConfigError
from bcls.pipeline.sources.cider import (CiderSource, GroupedHash, cider_d_scores, cider_tables, ngram_counts,
                                 ngram_counts_from_ids, prepare_cider, ptb_token_ids, ptb_tokenize)
from bcls.pipeline.sources.ngram_kernels import group_by_image
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.sources import LABEL_SOURCES, make_source



def _pycoco(tokens, refs, img, cap):
    """coco-caption's own code with corpus document frequencies (see bench/bench_cider.py for the argument):
    ``compute_doc_freq`` over each image's full caption set once; pair scorers padded to D entries so that
    ``ref_len = log(len(crefs)) = log(D)``; ``compute_cider`` unmodified."""
    cider_scorer = pytest.importorskip("pycocoevalcap.cider.cider_scorer")
    n_docs = int((refs >= 0).any(axis=1).sum())
    df_scorer = cider_scorer.CiderScorer(n=4, sigma=6.0)
    for row in refs:
        df_scorer += (None, [tokens[r] for r in row if r >= 0])
    df_scorer.compute_doc_freq()
    out = []
    for lo in range(0, len(img), n_docs):
        scorer = cider_scorer.CiderScorer(n=4, sigma=6.0)
        block = range(lo, min(lo + n_docs, len(img)))
        for p in block:
            scorer += (tokens[cap[p]], [tokens[r] for r in refs[img[p]] if r >= 0 and r != cap[p]])
        for _ in range(n_docs - len(block)):
            scorer += ("", [""])
        scorer.document_frequency = defaultdict(float, df_scorer.document_frequency)
        out.extend(scorer.compute_cider()[:len(block)])
    return np.asarray(out)


def test_equals_pycocoevalcap_on_coco_captions(coco_corpus):
    corpus = coco_corpus(50)
    tokens = [ptb_tokenize(t) for t in corpus.texts]
    rng = np.random.default_rng(0)
    own_img, own_slot = np.nonzero(corpus.refs >= 0)
    own_cap = corpus.refs[own_img, own_slot]  # every image with each of its own captions (leave-one-out)
    other_img = np.repeat(np.arange(50), 10)  # and with 10 random captions of other images
    other_cap = rng.integers(0, len(corpus.texts), len(other_img))
    other_cap = np.where(corpus.image_index[other_cap] == other_img, (other_cap + 5) % len(corpus.texts),
                         other_cap)
    img, cap = np.r_[own_img, other_img], np.r_[own_cap, other_cap]
    expected = _pycoco(tokens, corpus.refs, img, cap)
    got = cider_d_scores(prepare_cider(corpus.texts, corpus.image_index, corpus.refs), img, cap)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert expected.max() > 1.0 and (expected[:len(own_img)] > 0).all()  # not a vacuous comparison
    source = CiderSource().score(corpus, img, cap)
    assert source.dtype == np.float32
    np.testing.assert_allclose(source, expected, rtol=1e-6, atol=1e-6)


def test_leave_one_out_and_single_caption_images():
    # image 0 holds "a dog runs" twice: scored against its own copy, the caption must not see itself
    texts = ("a dog runs", "a dog runs", "a cat sleeps", "a cat sleeps on a bed", "a bird", "a dog runs")
    corpus = LabelCorpus.from_groups(texts, np.array([0, 0, 1, 1, 2, 3]))
    tables = prepare_cider(texts, corpus.image_index, corpus.refs)
    tokens = list(texts)
    img = np.array([0, 0, 1, 1, 2, 3, 2, 0])
    cap = np.array([0, 1, 2, 3, 4, 5, 0, 5])
    got = cider_d_scores(tables, img, cap)
    assert np.isnan(got[4]) and np.isnan(got[5])  # image 2 / 3 have no caption besides the candidate
    ok = ~np.isnan(got)
    np.testing.assert_allclose(got[ok], _pycoco(tokens, corpus.refs, img[ok], cap[ok]), atol=1e-9)
    # (0, caption 0) is scored against caption 1 only: identical text, the same as caption 5 (another image)
    # scored against both captions of image 0 (two identical references average to the same value)
    assert got[0] == pytest.approx(got[1]) == pytest.approx(got[7])
    # (2, caption 0): image 2's only caption "a bird" is a reference; the candidate is from image 0
    assert got[6] >= 0.0


def test_hand_checkable_values():
    # D = 2; "a" is in both images (idf 0); every other n-gram in one image (idf log 2 = L)
    texts = ("a dog", "a big dog runs", "a cat", "a cat")
    corpus = LabelCorpus.from_groups(texts, np.array([0, 0, 1, 1]))
    got = CiderSource().score(corpus, np.array([0, 1, 0]), np.array([0, 2, 2]))
    # (0, "a dog") vs "a big dog runs" only: unigrams dog·dog L² / (L · L√3); bigram "a dog" unmatched;
    # lengths (bigrams) 1 and 3 → penalty exp(−4/72); score = 10 · (1/√3) e^{−1/18} / 4
    assert got[0] == pytest.approx(2.5 * math.exp(-1 / 18) / math.sqrt(3), rel=1e-6)
    # (1, "a cat") vs its copy: unigram "cat" and bigram "a cat" match fully (cosine 1), orders 3–4 empty → 10·2/4
    assert got[1] == pytest.approx(5.0, rel=1e-6)
    # (0, "a cat"): only "a" is shared, with idf 0
    assert got[2] == 0.0


def test_clipping_uses_the_smaller_count():
    # D = 3: "dog" in images 0 and 2, "a" in 0 and 1 (idf w = log 1.5); "dog dog" is in image 2 only
    texts = ("a dog", "a dog", "a cat", "a cat", "dog dog", "the sun")
    corpus = LabelCorpus.from_groups(texts, np.array([0, 0, 1, 1, 2, 2]))
    got = CiderSource().score(corpus, np.array([0]), np.array([4]))
    # vs each "a dog": min(2w, w)·w / (2w · w√2) = 1/(2√2) (unclipped it would be 2w·w: 1/√2); mean of two refs
    assert got[0] == pytest.approx(10 * (1 / (2 * math.sqrt(2))) / 4, rel=1e-6)


@pytest.mark.parametrize("text, expected", [
    ("A man with a red helmet on a small moped on a dirt road .",
     "a man with a red helmet on a small moped on a dirt road"),
    ("A dog's head.", "a dog 's head"),
    ("Two people, one in a T-shirt!", "two people one in a t-shirt"),
    ('He said "hello" (loudly)?', "he said hello loudly"),
    ("I don't know; it cannot be... 3.5 or 1,000 at 10:30", "i do n't know it can not be 3.5 or 1,000 at 10:30"),
    ("the dogs' toys -- in the U.S.", "the dogs toys in the u.s."),
    ("a sign that says '' i love new york ''", "a sign that says i love new york"),
    ("should n't be `` quoted '' ?", "should n't be quoted"),
    ("a man 's hat : a - b", "a man 's hat a b"),
    ("", ""),
])
def test_tokenizer(text, expected):
    assert ptb_tokenize(text) == expected
    assert ptb_tokenize(expected) == expected  # already-tokenized text passes unchanged


_TRICKY = ["A man with a red helmet .", "A dog's head.", "I don't know; it cannot be... 3.5 or 1,000 at 10:30",
           "", "ends with 1,", "2, starts with a digit", "line\nbreak inside", "ΟΔΟΣ ΣΑΣ", "a NUL\x00inside",
           "the dogs' toys -- in the U.S.", "  spaces   only  ", "'quoted' words.'", ":", "10:", ":30",
           "no-break\u00a0space, thin\u2009space\u3000and\x1cseparators\x85too", "tab\tvertical\x0bfeed\x0c.",
           "café crème", "一只狗 在 草地上"]


@pytest.mark.parametrize("text", ["a b  a\tb\n c", "  ", "", "x", "dog dog dog cat " * 50,
                                  "\u00a0a\u2009b\u3000a\x1cc\x85d\x0be\x0cf é é 狗", "é\u00a0é",
                                  " ".join(f"w{i % 40_000}" for i in range(50_000))])  # > 2**15 distinct: growth
def test_distinct_tokens_equal_str_split(text):
    """The numba token splitter gives exactly ``str.split``'s tokens (Unicode whitespace included), numbered as
    the dict-based code it replaced numbered them."""
    from bcls.pipeline.sources.ptb import _distinct_tokens

    tok, distinct = _distinct_tokens(text)
    raw = text.split()
    assert [distinct[t] for t in tok] == raw
    assert distinct == list(dict.fromkeys(reversed(raw)))  # by descending last occurrence


@pytest.mark.parametrize("with_nul", [False, True])
def test_token_ids_equal_per_text_tokenizer(coco_corpus, with_nul):
    """The batch tokenizer gives exactly ptb_tokenize's tokens, text by text (real captions and corner cases;
    with a NUL in some text it takes the per-text path)."""
    texts = list(coco_corpus(400).texts) + [t for t in _TRICKY if with_nul or "\x00" not in t]
    ids, n_words, words = ptb_token_ids(texts)
    assert n_words.shape == (len(texts),) and ids.shape == (n_words.sum(),)
    bounds = np.r_[0, np.cumsum(n_words)]
    got = [" ".join(words[w] for w in ids[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
    assert got == [ptb_tokenize(t) for t in texts]
    assert len(set(words)) == len(words) and max(n_words) > 10
    empty = ptb_token_ids([])
    assert len(empty[0]) == len(empty[1]) == 0


def test_comma_colon_patterns_equal_their_plain_form():
    """The fast comma / colon patterns split exactly where "no digit after, or no digit before" does."""
    import itertools
    import re

    from bcls.pipeline.sources.ptb import _SUBS

    plain = {",": re.compile(r",(?!\d)|(?<!\d),"), ":": re.compile(r":(?!\d)|(?<!\d):")}
    fast = {p.pattern[0]: p for p, _ in _SUBS if p.pattern[0] in plain}
    pieces = ["1", "a", " ", ",", ":", ""]
    for mark in plain:
        for parts in itertools.product(pieces, repeat=4):
            text = "".join(parts)
            assert fast[mark].sub(f" {mark} ", text) == plain[mark].sub(f" {mark} ", text), text


def test_ngram_counts_match_coco_caption_precook():
    cider_scorer = pytest.importorskip("pycocoevalcap.cider.cider_scorer")
    sentences = ["a dog a dog runs", "a cat", "", "dog", "a dog a dog a dog runs fast"]
    counts = ngram_counts([s.split() for s in sentences], 4)
    for s, sent in enumerate(sentences):
        mine = {}
        for e in range(counts.ptr[s], counts.ptr[s + 1]):
            mine[int(counts.gram[e])] = int(counts.count[e])
        ref = cider_scorer.precook(sent, 4)
        assert sorted(mine.values()) == sorted(ref.values())
        assert sorted(len(g) for g in ref) == sorted(int(counts.order[g]) for g in mine)
    assert counts.n_words.tolist() == [5, 2, 0, 1, 8]
    # one id per distinct n-gram across sentences: "a dog" (sentences 0 and 4) shares an id
    total_distinct = len({g for s in sentences for g in cider_scorer.precook(s, 4)})
    assert counts.n_grams == total_distinct


@pytest.mark.parametrize("shift, dtype", [(0, np.int32), (1 << 40, np.int64)])  # 32-bit slots where all fits
def test_grouped_hash_equals_a_dict(shift, dtype):
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 30, 2000)
    keys = rng.integers(0, 500, 2000) + shift
    pairs = sorted(set(zip(groups.tolist(), keys.tolist())))
    g = np.array([p[0] for p in pairs] + [31])  # group 31: one key; group 30: none
    k = np.array([p[1] for p in pairs] + [7 + shift])
    table = GroupedHash.build(g, k, np.arange(len(k)) * 3 + shift, 32)
    assert table.keys.dtype == table.values.dtype == dtype
    qg, qk = rng.integers(0, 32, 5000), rng.integers(0, 500, 5000) + shift
    lookup = {(a, b): i * 3 + shift for i, (a, b) in enumerate(zip(g.tolist(), k.tolist()))}
    got = table.get(qg, qk)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [lookup.get((a, b), -1) for a, b in zip(qg, qk)])


def test_preparation_is_cached_per_corpus():
    texts = ("a dog", "a big dog", "a cat", "a cat on a mat")
    corpus = LabelCorpus.from_groups(texts, np.array([0, 0, 1, 1]))
    assert cider_tables(corpus) is cider_tables(corpus)
    other = LabelCorpus.from_groups(texts, np.array([0, 1, 0, 1]))
    assert cider_tables(other) is not cider_tables(corpus)
    src = CiderSource()
    first = src.score(corpus, np.array([0, 1]), np.array([2, 0]))
    np.testing.assert_array_equal(src.score(corpus, np.array([0, 1]), np.array([2, 0])), first)


def test_registry_settings_and_validation():
    assert "cider" in LABEL_SOURCES
    src = make_source("cider")
    assert isinstance(src, CiderSource) and src.name == "cider" and not src.needs_embeddings
    settings = json.loads(json.dumps(src.settings()))
    assert settings["n"] == 4 and settings["sigma"] == 6.0
    with pytest.raises(ConfigError):
        CiderSource(sigma=0.0)
    with pytest.raises(ConfigError):
        CiderSource(n=0)


def test_label_build_writes_cider_values(tmp_path, encoder):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from bcls.data.captions import read_captions
    from bcls.data.shards import read_labels
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels

    words = "dog cat man woman beach street red blue small large runs sits car ball".split()
    rng = np.random.default_rng(0)
    rows = {"image_id": [], "caption_id": [], "text": []}
    for i in range(8):
        for j in range(5):
            rows["image_id"].append(100 + i)
            rows["caption_id"].append(5000 + i * 5 + j)
            rows["text"].append("A " + " ".join(rng.choice(words, 4)) + ".")
    path = tmp_path / "caps.csv"
    pcsv.write_csv(pa.table(rows), path)
    labels = build_labels(LabelBuildConfig(captions=str(path), out=str(tmp_path / "labels"), k=6,
                                           sources=("sbert", "cider"), images_per_shard=3), encoder=encoder)
    assert labels.provenance["sources"]["cider"]["n"] == 4
    data = read_labels(labels)
    img, cap, val = (data.column(c).to_numpy() for c in ("image_id", "caption_id", "cider"))
    table = read_captions(path)
    corpus = LabelCorpus.from_groups(table.texts, table.image_index())
    img_pos = np.searchsorted(table.unique_images(), img)
    cap_pos = np.searchsorted(table.caption_ids, cap)
    np.testing.assert_allclose(val, CiderSource().score(corpus, img_pos, cap_pos), rtol=1e-6)
    assert np.isfinite(val).all() and (val > 0).any()


def test_threaded_scoring_equals_one_thread(coco_corpus, monkeypatch):
    """Pairs split over threads give exactly the single-threaded values, in the input order."""
    from bcls.pipeline.sources import cider

    corpus = coco_corpus(60)
    rng = np.random.default_rng(3)
    img = rng.integers(0, 60, 4000)
    cap = rng.integers(0, len(corpus.texts), 4000)
    tables = prepare_cider(corpus.texts, corpus.image_index, corpus.refs)
    monkeypatch.setattr(cider, "MIN_PAIRS_PER_THREAD", 10**9)
    one = cider_d_scores(tables, img, cap)
    monkeypatch.setattr(cider, "MIN_PAIRS_PER_THREAD", 500)
    monkeypatch.setattr(cider.os, "cpu_count", lambda: 3)
    np.testing.assert_array_equal(cider_d_scores(tables, img, cap), one)
    assert np.nanmax(one) > 1.0


def _reference_counts(seqs: list[list[int]], n_vocab: int, n: int):
    """Plain construction of :class:`NgramCounts` from word ids: order-k ids number the distinct (order k-1 id,
    next word) keys in sorted order; each sequence's distinct grams sorted by id, with counts."""
    local = [list(s) for s in seqs]  # order-1 ids: the word ids
    sizes, per_seq = [n_vocab], [collections.Counter(s) for s in seqs]
    offset = n_vocab
    for k in range(2, n + 1):
        keys = [[local[i][p] * max(n_vocab, 1) + s[p + k - 1] for p in range(len(s) - k + 1)]
                for i, s in enumerate(seqs)]
        distinct = sorted({key for row in keys for key in row})
        rank = {key: r for r, key in enumerate(distinct)}
        local = [[rank[key] for key in row] for row in keys]
        for i, row in enumerate(local):
            per_seq[i].update(r + offset for r in row)
        sizes.append(len(distinct))
        offset += len(distinct)
    ptr = np.cumsum([0] + [len(c) for c in per_seq])
    gram = [g for c in per_seq for g in sorted(c)]
    count = [c[g] for c in per_seq for g in sorted(c)]
    order = np.repeat(np.arange(1, n + 1), sizes)
    return ptr, gram, count, order


@pytest.mark.parametrize("n", [1, 2, 4, 5])
def test_ngram_kernels_equal_a_plain_construction(n):
    rng = np.random.default_rng(n)
    # short and empty sequences, repeats, and a few longer than the kernel's in-place sort handles (> 64 grams)
    lengths = np.concatenate([rng.integers(0, 14, 300), [0, 1, 40, 90]])
    seqs = [rng.integers(0, 25, int(m)).tolist() for m in lengths]
    seqs[5] = [3] * 12  # one word repeated: counts above 1 at every order
    flat = np.array([w for s in seqs for w in s], dtype=np.int64)
    counts = ngram_counts_from_ids(flat, np.array([len(s) for s in seqs], dtype=np.int64), 25, n)
    ptr, gram, count, order = _reference_counts(seqs, 25, n)
    np.testing.assert_array_equal(counts.ptr, ptr)
    np.testing.assert_array_equal(counts.gram, gram)
    np.testing.assert_array_equal(counts.count, count)
    np.testing.assert_array_equal(counts.order, order)
    assert counts.gram.dtype == counts.count.dtype == counts.ptr.dtype == np.int64 and counts.order.dtype == np.int8
    # grouping by (image, gram): the order of a plain sort by (image, gram, caption). Images 0-8 have about 25
    # captions each (sorted), images 10-69 a few (merged); images 7 and 9 have none
    image_of = np.concatenate([rng.choice([0, 1, 2, 3, 4, 5, 6, 8], 200), rng.integers(10, 70, len(seqs) - 200)])
    rng.shuffle(image_of)
    order_, ig_image, ig_gram, ig_ptr = group_by_image(image_of, 70, counts.ptr, counts.gram)
    cap = np.repeat(np.arange(len(seqs)), np.diff(counts.ptr))
    expected = np.lexsort((cap, counts.gram, image_of[cap]))
    np.testing.assert_array_equal(order_, expected)
    pairs = np.stack([image_of[cap][expected], counts.gram[expected]], axis=1)
    first = np.flatnonzero(np.r_[True, (pairs[1:] != pairs[:-1]).any(axis=1)])
    np.testing.assert_array_equal(ig_image, pairs[first, 0])
    np.testing.assert_array_equal(ig_gram, pairs[first, 1])
    np.testing.assert_array_equal(ig_ptr, np.r_[first, len(expected)])
