"""``bcls eval --judgments``: the model's similarities against human judgments, checked with naive loops."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bcls.data.captions import CaptionTable
from bcls.data.infra.errors import ConfigError
from bcls.data.judgments import Judgments
from bcls.trainer.evaluation.judged import JUDGED_KEYS, judged_metrics, query_kendall_b


def _table() -> CaptionTable:
    # images 7, 3, 9 (in order of appearance), two captions each
    return CaptionTable.from_lists([7, 7, 3, 3, 9, 9], [70, 71, 30, 31, 90, 91], list("abcdef"))


def _judgments(rng, n=40) -> Judgments:
    images = rng.choice([7, 3, 9, 5], size=n)            # image 5 is not in the split
    captions = rng.choice([70, 71, 30, 31, 90, 91, 11], size=n)  # nor is caption 11
    keys = {}
    for i, c in zip(images, captions):
        keys[(int(i), int(c))] = None
    pairs = np.array(list(keys), dtype=np.int64)
    scores = rng.integers(0, 4, size=len(pairs)) / 3.0
    return Judgments("image-caption", pairs[:, 0], pairs[:, 1], scores, np.array(["x"] * len(pairs), dtype=object),
                     "cf.txt", "flickr8k-crowdflower")


def test_judged_metrics_equal_naive_loops_over_the_pairs_in_the_split():
    rng = np.random.default_rng(0)
    table, judgments = _table(), _judgments(rng)
    sims = rng.normal(size=(3, 6))
    got = judged_metrics(sims, table, judgments)
    assert set(got) == set(JUDGED_KEYS)
    row = {7: 0, 3: 1, 9: 2}
    col = {c: k for k, c in enumerate([70, 71, 30, 31, 90, 91])}
    sim, human, query, outside = [], [], [], 0
    for i, c, h in zip(judgments.query_ids, judgments.candidate_ids, judgments.scores):
        if int(i) not in row or int(c) not in col:
            outside += 1
            continue
        sim.append(sims[row[int(i)], col[int(c)]])
        human.append(h)
        query.append(int(i))
    assert got["judged_pairs"] == len(sim) and got["judged_outside_split"] == outside > 0
    assert got["judged_spearman"] == pytest.approx(stats.spearmanr(sim, human).statistic)
    assert got["judged_kendall_b"] == pytest.approx(stats.kendalltau(sim, human).statistic)
    assert got["judged_kendall_c"] == pytest.approx(stats.kendalltau(sim, human, variant="c").statistic)
    taus = []
    for q in sorted(set(query)):
        s = [a for a, b in zip(sim, query) if b == q]
        h = [a for a, b in zip(human, query) if b == q]
        if len(set(h)) >= 2:
            taus.append(stats.kendalltau(s, h).statistic)
    assert got["judged_queries"] == len(taus) and got["judged_query_kendall_b"] == pytest.approx(np.mean(taus))


def test_query_kendall_skips_queries_without_two_human_levels():
    sim = np.array([0.1, 0.2, 0.3, 0.9, 0.8])
    human = np.array([0.0, 1.0, 1.0, 0.5, 0.5])
    query = np.array([1, 1, 1, 2, 2])  # query 2: one human level, no tau
    tau, n = query_kendall_b(sim, human, query)
    assert n == 1 and tau == pytest.approx(stats.kendalltau([0.1, 0.2, 0.3], [0, 1, 1]).statistic)
    assert query_kendall_b(sim[3:], human[3:], query[3:]) == (None, 0)


def test_judgments_that_miss_the_split_or_compare_captions_are_refused():
    table = _table()
    outside = Judgments("image-caption", np.array([5, 5]), np.array([11, 12]), np.array([0.0, 1.0]),
                        np.array(["x", "x"], dtype=object), "cf.txt", "flickr8k-crowdflower")
    with pytest.raises(ConfigError, match=r"cf.txt: none of its 2 judged pairs is in the evaluated split"):
        judged_metrics(np.zeros((3, 6)), table, outside)
    sts = Judgments("caption-caption", np.array([70]), np.array([71]), np.array([1.0]),
                    np.array(["x"], dtype=object), "sts.csv", "cxc-sts")
    with pytest.raises(ConfigError, match="compare captions with captions"):
        judged_metrics(np.zeros((3, 6)), table, sts)
