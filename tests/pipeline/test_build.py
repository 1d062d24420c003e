"""The label build end to end on a tiny caption table (with a deterministic stand-in encoder)."""

import json

import numpy as np
import pyarrow.csv as pcsv
import pyarrow as pa
import pytest

from bcls.data.captions import read_captions
from bcls.data.infra.errors import ConfigError
from bcls.data.shards import read_labels
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
from bcls.pipeline.embedding.embed import EncoderSpec
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.search.indexes import IndexSpec
from bcls.pipeline.sources import SbertSource
from tests.conftest import brute_candidate_pairs, drop_a_ctrl_c, label_files, write_caption_csv


def test_build_writes_shards_that_match_the_source(tmp_path, encoder):
    captions = write_caption_csv(tmp_path / "caps.csv")
    config = LabelBuildConfig(captions=str(captions), out=str(tmp_path / "labels"), k=4, caption_k=2,
                              images_per_shard=4, use_cache=False)
    labels = build_labels(config, encoder=encoder)
    assert len(labels.manifest["shards"]) == 3
    prov = labels.provenance
    assert prov["k"] == 4 and prov["sources"]["sbert"]["aggregate"] == "max"
    table = read_captions(captions)
    assert prov["input"]["fingerprint"] == table.fingerprint()
    data = read_labels(labels)
    img, cap, val = (data.column(c).to_numpy() for c in ("image_id", "caption_id", "sbert"))
    emb = encoder(table.texts)
    img_pos = np.searchsorted(table.unique_images(), img)
    cap_pos = np.searchsorted(table.caption_ids, cap)
    got = set(zip(img_pos.tolist(), cap_pos.tolist()))
    assert len(got) == len(img)
    assert got == brute_candidate_pairs(emb, table.image_index(), 4, 2)
    # values equal a direct evaluation of the source on the same pairs
    corpus = LabelCorpus.from_groups(table.texts, table.image_index(), emb)
    np.testing.assert_allclose(val, SbertSource().score(corpus, img_pos, cap_pos), atol=1e-6)
    config_file = json.loads((tmp_path / "labels" / "_build_config.json").read_text())
    assert config_file["k"] == 4


def test_rebuild_is_a_no_op_and_other_settings_are_refused(tmp_path, encoder):
    captions = write_caption_csv(tmp_path / "caps.csv")
    config = LabelBuildConfig(captions=str(captions), out=str(tmp_path / "labels"), k=3, use_cache=False)
    first = build_labels(config, encoder=encoder).manifest
    again = build_labels(config, encoder=encoder).manifest
    assert first == again
    other = LabelBuildConfig(captions=str(captions), out=str(tmp_path / "labels"), k=5)
    with pytest.raises(ConfigError, match="different settings.*--force"):
        build_labels(other, encoder=encoder)
    forced = build_labels(LabelBuildConfig(captions=str(captions), out=str(tmp_path / "labels"), k=5, force=True),
                          encoder=encoder)
    assert forced.provenance["k"] == 5


def test_build_refuses_a_folder_with_foreign_files(tmp_path, encoder):
    captions = write_caption_csv(tmp_path / "caps.csv")
    out = tmp_path / "labels"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        build_labels(LabelBuildConfig(captions=str(captions), out=str(out), k=3), encoder=encoder)
    assert (out / "precious.txt").read_text() == "mine"


def test_unknown_source_is_an_error_before_any_work(tmp_path, encoder):
    with pytest.raises(ConfigError, match="unknown label source"):
        build_labels(LabelBuildConfig(captions=str(tmp_path / "none.csv"), out=str(tmp_path / "o"),
                                      sources=("bleu",)), encoder=encoder)
    assert not (tmp_path / "o").exists()



class _Counting:
    def __init__(self, encoder):
        self.encoder, self.seen = encoder, 0

    def __call__(self, texts):
        self.seen += len(texts)
        return self.encoder(texts)


def test_embedding_cache_makes_a_second_build_embed_nothing(tmp_path, encoder):
    captions = write_caption_csv(tmp_path / "caps.csv")
    counting = _Counting(encoder)
    common = dict(captions=str(captions), k=3, encoder=EncoderSpec(cache=str(tmp_path / "cache")), images_per_shard=4)
    build_labels(LabelBuildConfig(out=str(tmp_path / "a"), **common), encoder=counting, encoder_id="hash-64")
    table = read_captions(captions)
    assert counting.seen == len(set(table.texts))  # each distinct caption once
    build_labels(LabelBuildConfig(out=str(tmp_path / "b"), **common), encoder=counting, encoder_id="hash-64")
    assert counting.seen == len(set(table.texts))  # nothing embedded the second time
    a, b = label_files(tmp_path / "a"), label_files(tmp_path / "b")
    assert a == b
    # another model id is another cache entry; no cache id means no cache at all
    build_labels(LabelBuildConfig(out=str(tmp_path / "c"), **common), encoder=counting, encoder_id="other")
    assert counting.seen == 2 * len(set(table.texts))
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "cache").rglob("*"))


def test_embedding_cache_fills_only_missing_texts(tmp_path, encoder):
    from bcls.pipeline.embedding.embed import EmbeddingCache, cached_encoder

    counting = _Counting(encoder)
    enc = cached_encoder(EmbeddingCache(tmp_path, "m"), lambda: counting)
    first = enc(["a dog", "a cat", "a dog"])
    assert counting.seen == 2
    second = enc(["a cat", "a red car", "a dog"])
    assert counting.seen == 3
    np.testing.assert_array_equal(second[[0, 2]], first[[1, 0]])
    np.testing.assert_allclose(second[1], encoder(["a red car"])[0], atol=1e-6)
    # a half-written part (no keys file) is ignored; a garbage keys file is skipped with a warning
    folder = EmbeddingCache(tmp_path, "m").folder
    (folder / "part-zz.keys.npy").write_bytes(b"garbage")
    np.testing.assert_array_equal(cached_encoder(EmbeddingCache(tmp_path, "m"), lambda: counting)(["a dog"]),
                                  first[:1])


def test_embedding_cache_reports_one_progress_over_all_blocks(tmp_path, encoder, caplog):
    """Blocks share one rate/ETA report: an encoder that reports progress gets the cache's, others are counted."""
    from bcls.pipeline.embedding.embed import EmbeddingCache, cached_encoder

    seen = []

    def reporting(texts, progress=None):
        seen.append(progress)
        progress.update(len(texts))
        return encoder(texts)

    reporting.reports_progress = True
    texts = [f"caption number {i}" for i in range(25)]
    for enc in (reporting, _Counting(encoder)):
        caplog.clear()
        with caplog.at_level("INFO", logger="bcls.pipeline.embedding.embed"):
            cached_encoder(EmbeddingCache(tmp_path / type(enc).__name__, "m"), lambda: enc, block=10)(texts)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("embedding captions:")]
        assert lines and lines[-1].startswith("embedding captions: 25/25 captions")
    assert len(seen) == 3 and seen[0] is seen[1] is seen[2] and seen[0].done == 25


def test_distributed_scheduler_gives_the_same_shards(tmp_path, encoder):
    distributed = pytest.importorskip("distributed")
    captions = write_caption_csv(tmp_path / "caps.csv", n_images=12)
    common = dict(captions=str(captions), k=3, sources=("sbert", "cider"), images_per_shard=3, use_cache=False)
    build_labels(LabelBuildConfig(out=str(tmp_path / "local"), **common), encoder=encoder)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        build_labels(LabelBuildConfig(out=str(tmp_path / "dist"), scheduler=c.scheduler_address, **common),
                     encoder=encoder)
    build_labels(LabelBuildConfig(out=str(tmp_path / "sync"), scheduler="sync", **common), encoder=encoder)
    assert label_files(tmp_path / "local") == label_files(tmp_path / "dist") == label_files(tmp_path / "sync")
    assert len(label_files(tmp_path / "local")) == 5


def test_unreachable_scheduler_is_a_config_error(tmp_path, encoder, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("bcls.pipeline.building.scheduling.CONNECT_TIMEOUT", "0.5s")
    captions = write_caption_csv(tmp_path / "caps.csv")
    with pytest.raises(ConfigError, match="dask scheduler"):
        build_labels(LabelBuildConfig(captions=str(captions), out=str(tmp_path / "o"), k=2, use_cache=False,
                                      scheduler="tcp://127.0.0.1:9"), encoder=encoder)


def test_resume_reuses_complete_shards_and_equals_a_clean_build(tmp_path, encoder):
    from bcls.data.shards import open_labels, write_shard
    from bcls.data.infra.errors import ShardError

    captions = write_caption_csv(tmp_path / "caps.csv", n_images=12)
    common = dict(captions=str(captions), k=3, images_per_shard=3, use_cache=False)
    build_labels(LabelBuildConfig(out=str(tmp_path / "clean"), **common), encoder=encoder)
    clean = label_files(tmp_path / "clean")
    out = tmp_path / "crashed"
    build_labels(LabelBuildConfig(out=str(out), **common), encoder=encoder)
    # simulate a crash: no manifest, one shard missing, one from another build, a leftover temporary
    (out / "_manifest.json").unlink()
    (out / "shard-00001.parquet").unlink()
    write_shard(out, 2, np.array([1]), np.array([2]), {"sbert": np.array([0.5])}, {"config_hash": "x", "shard": 2})
    (out / ".shard-00003.parquet.tmp-999999999").write_bytes(b"half")
    with pytest.raises(ShardError, match="did not finish"):
        open_labels(out)
    mtime0 = (out / "shard-00000.parquet").stat().st_mtime_ns
    build_labels(LabelBuildConfig(out=str(out), **common), encoder=encoder)
    assert label_files(out) == clean
    assert (out / "shard-00000.parquet").stat().st_mtime_ns == mtime0  # reused, not rewritten
    assert not any(".tmp-" in p.name for p in out.iterdir())


def test_a_ctrl_c_that_python_drops_stops_the_build_after_its_shard(tmp_path, encoder, monkeypatch):
    """The Ctrl-C lands where Python drops it, in the second shard's task (run in the main thread by the sync
    scheduler): the build stops after that shard, keeps the two, and a rerun equals a clean build."""
    import sys

    from bcls.pipeline.building import scheduling

    captions = write_caption_csv(tmp_path / "caps.csv", n_images=12)
    common = dict(captions=str(captions), k=3, images_per_shard=3, use_cache=False, scheduler="sync")
    build_labels(LabelBuildConfig(out=str(tmp_path / "clean"), **common), encoder=encoder)
    real, started = scheduling.build_shard, []

    def dropping(out, plan, *args, **kwargs):
        started.append(plan.index)
        if len(started) == 2:
            drop_a_ctrl_c()
        return real(out, plan, *args, **kwargs)

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    monkeypatch.setattr(scheduling, "build_shard", dropping)
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        build_labels(LabelBuildConfig(out=str(out), **common), encoder=encoder)
    assert len(started) == 2  # of 4 shards
    assert sorted(p.name for p in out.glob("shard-*")) == sorted(f"shard-{i:05d}.parquet" for i in started)
    assert unraisable == []
    monkeypatch.undo()
    build_labels(LabelBuildConfig(out=str(out), **common), encoder=encoder)
    assert label_files(out) == label_files(tmp_path / "clean")


def test_unfinished_build_with_other_settings_is_refused(tmp_path, encoder):
    captions = write_caption_csv(tmp_path / "caps.csv")
    out = tmp_path / "labels"
    build_labels(LabelBuildConfig(captions=str(captions), out=str(out), k=3, use_cache=False), encoder=encoder)
    (out / "_manifest.json").unlink()
    with pytest.raises(ConfigError, match="unfinished label build with different settings.*--force"):
        build_labels(LabelBuildConfig(captions=str(captions), out=str(out), k=4, use_cache=False), encoder=encoder)
    done = build_labels(LabelBuildConfig(captions=str(captions), out=str(out), k=4, use_cache=False, force=True),
                        encoder=encoder)
    assert done.provenance["k"] == 4


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_index_records_its_recall(tmp_path, encoder, index):
    captions = write_caption_csv(tmp_path / "caps.csv", n_images=30)
    labels = build_labels(LabelBuildConfig(captions=str(captions), out=str(tmp_path / index), k=3, index=index,
                                           nlist=4, use_cache=False, recall_queries=50), encoder=encoder)
    faiss_info = labels.provenance["faiss"]
    assert faiss_info["index"]["kind"] == index
    recall = faiss_info["recall"]
    assert recall["queries"] == 50 and all(0.0 <= v <= 1.0 for v in recall["recall"].values())
    assert labels.provenance["config"]["index"]["kind"] == index


def test_index_settings_reach_the_index_by_name(tmp_path):
    # each setting lands in its own IndexSpec field (positional passing once shifted hnsw_m into train_per_list)
    config = LabelBuildConfig(captions="x", out=str(tmp_path), index="hnsw", nlist=7, nprobe=3, hnsw_m=9,
                              ef_construction=40, ef_search=50, ivf_codes="float32")
    spec = config.index_spec()
    assert (spec.kind, spec.nlist, spec.nprobe, spec.hnsw_m, spec.ef_construction, spec.ef_search, spec.codes) == \
        ("hnsw", 7, 3, 9, 40, 50, "float32")
    assert spec.train_per_list == IndexSpec().train_per_list


def test_bad_index_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown index"):
        LabelBuildConfig(captions="x", out=str(tmp_path), index="lsh")
    with pytest.raises(ConfigError, match="nprobe"):
        LabelBuildConfig(captions="x", out=str(tmp_path), index="ivf", nprobe=0)


def test_file_source_values_reach_the_shards(tmp_path, encoder):
    captions = write_caption_csv(tmp_path / "caps.csv")
    first = read_labels(build_labels(LabelBuildConfig(captions=str(captions), out=str(tmp_path / "l0"), k=4),
                                     encoder=encoder))
    # the user's scores for 20 of the candidate pairs (the other candidates stay unknown)
    img, cap = first.column("image_id").to_numpy()[::3][:20], first.column("caption_id").to_numpy()[::3][:20]
    scores = np.linspace(0.0, 1.0, 20)
    pcsv.write_csv(pa.table({"image_id": img, "caption_id": cap, "score": scores}), tmp_path / "mine.csv")
    labels = build_labels(LabelBuildConfig(captions=str(captions), out=str(tmp_path / "l"), k=4,
                                           sources=("sbert", "file"),
                                           source_options={"file": {"path": str(tmp_path / "mine.csv")}}),
                          encoder=encoder)
    data = read_labels(labels)
    given = {(int(i), int(c)): float(s) for i, c, s in zip(img, cap, scores)}
    assert int(np.sum(~np.isnan(data.column("file").to_numpy()))) == 20
    got = zip(data.column("image_id").to_numpy(), data.column("caption_id").to_numpy(), data.column("file").to_numpy())
    for i, c, value in got:
        if (int(i), int(c)) in given:
            assert value == pytest.approx(given[(int(i), int(c))])
        else:
            assert np.isnan(value)  # pairs the file does not list are unknown
    with pytest.raises(ConfigError, match="needs its path option"):
        build_labels(LabelBuildConfig(captions=str(captions), out=str(tmp_path / "m"), sources=("file",)),
                     encoder=encoder)



def test_parse_processes_reach_the_spice_source_but_not_the_build_identity(tmp_path):
    from bcls.data.infra.errors import ConfigError
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_identity

    table = read_captions(write_caption_csv(tmp_path / "caps.csv"))
    a = LabelBuildConfig(captions="caps.csv", out=str(tmp_path), sources=("spice",),
                         source_options={"spice": {"processes": 3}})
    b = LabelBuildConfig(captions="caps.csv", out=str(tmp_path), sources=("spice",))
    assert a.make_sources()[0].processes == 3 and b.make_sources()[0].processes == 2  # default: two
    # how fast the parse runs does not change the labels
    assert build_identity(a, a.make_sources(), table) == build_identity(b, b.make_sources(), table)
    with pytest.raises(ConfigError, match="processes must be 0"):
        LabelBuildConfig(captions="caps.csv", out=str(tmp_path), sources=("spice",),
                         source_options={"spice": {"processes": -1}}).make_sources()
    with pytest.raises(ConfigError, match="label source 'spice' has no option.*threads.*it takes: synonyms"):
        LabelBuildConfig(captions="caps.csv", out=str(tmp_path), sources=("spice",),
                         source_options={"spice": {"threads": 2}})
    with pytest.raises(ConfigError, match="options given for label source 'cider', which is not among"):
        LabelBuildConfig(captions="caps.csv", out=str(tmp_path), sources=("spice",), source_options={"cider": {}})


def test_a_label_folder_is_one_parquet_dataset(tmp_path, encoder):
    """pyarrow, pandas and dask read a finished folder as exactly its labelled pairs; resume state is gone."""
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow.dataset as pads

    captions = write_caption_csv(tmp_path / "caps.csv")
    labels = build_labels(LabelBuildConfig(captions=str(captions), out=str(tmp_path / "l"), k=4, images_per_shard=3,
                                           sources=("sbert", "cider")), encoder=encoder)
    want = read_labels(labels)
    assert len(labels.manifest["shards"]) > 1 and not (tmp_path / "l" / ".resume").exists()
    keys = ["image_id", "caption_id"]
    got = pads.dataset(tmp_path / "l", format="parquet").to_table().sort_by([(k, "ascending") for k in keys])
    assert got.equals(want.sort_by([(k, "ascending") for k in keys]))
    frame = pd.read_parquet(tmp_path / "l").sort_values(keys).reset_index(drop=True)
    expected = want.to_pandas().sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, expected)
    lazy = dd.read_parquet(str(tmp_path / "l")).compute().sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(lazy, expected)


def test_folders_of_the_old_layout_still_open(tmp_path, encoder):
    from bcls.data.shards import open_labels, read_caption_embeddings

    captions = write_caption_csv(tmp_path / "caps.csv")
    build_labels(LabelBuildConfig(captions=str(captions), out=str(tmp_path / "l"), k=4), encoder=encoder)
    for new, old in (("_manifest.json", "manifest.json"), ("_caption_embeddings.npy", "caption_embeddings.npy")):
        (tmp_path / "l" / new).rename(tmp_path / "l" / old)
    labels = open_labels(tmp_path / "l")
    assert labels.manifest["rows"] == read_labels(labels).num_rows
    assert read_caption_embeddings(labels, len(read_captions(captions))).shape[0] == len(read_captions(captions))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the machine has a CUDA device")
def test_cuda_without_a_gpu_is_refused_before_any_work(tmp_path, encoder):
    from bcls.data.infra.errors import ConfigError

    captions = write_caption_csv(tmp_path / "caps.csv")
    build_labels(LabelBuildConfig(captions=str(captions), out=str(tmp_path / "warm"), k=4), encoder=encoder,
                 encoder_id="hash")  # the cache now holds these captions
    with pytest.raises(ConfigError, match="torch sees no CUDA device; use device=cpu"):
        build_labels(LabelBuildConfig(captions=str(captions), out=str(tmp_path / "l"), k=4, encoder=EncoderSpec(device="cuda")),
                     encoder=encoder, encoder_id="hash")
    assert not (tmp_path / "l").exists()


def test_tables_prepared_beside_a_gpu_search_give_the_same_shards(tmp_path, encoder, monkeypatch, caplog):
    """When the search runs on a GPU, CIDEr-D's tables are built in a thread during the search (once: the
    scoring finds them cached) and the shards are those of the usual order."""
    import logging

    from bcls.pipeline.building import label_build as build

    captions = write_caption_csv(tmp_path / "caps.csv", n_images=12)
    common = dict(captions=str(captions), k=3, sources=("sbert", "cider"), images_per_shard=5, use_cache=False)
    build_labels(LabelBuildConfig(out=str(tmp_path / "usual"), **common), encoder=encoder)
    monkeypatch.setattr(build, "search_on_gpu", lambda config: True)
    caplog.clear()  # the first build's records, caught when an earlier test (the CLI's) left the root at INFO
    with caplog.at_level(logging.INFO, logger="bcls"):
        build_labels(LabelBuildConfig(out=str(tmp_path / "beside"), **common), encoder=encoder)
    prepared = [r for r in caplog.records if r.getMessage().startswith("cider: prepared")]
    assert len(prepared) == 1 and prepared[0].threadName.startswith("bcls-tables")
    assert any("tables prepared beside the search" in r.getMessage() for r in caplog.records)
    assert label_files(tmp_path / "usual") == label_files(tmp_path / "beside")


def test_search_on_gpu_follows_the_index_choice(monkeypatch):
    from bcls.pipeline.building import label_build as build
    from bcls.pipeline.search import indexes

    def config(index):
        return LabelBuildConfig(captions="caps.csv", out="out", index=index)

    monkeypatch.setattr(indexes, "faiss_gpu_count", lambda: 0)
    monkeypatch.setattr(indexes, "torch_cuda_available", lambda: False)
    assert not any(build.search_on_gpu(config(i)) for i in ("exact", "ivf", "hnsw"))
    monkeypatch.setattr(indexes, "torch_cuda_available", lambda: True)  # torch's exact index only
    assert [build.search_on_gpu(config(i)) for i in ("exact", "ivf", "hnsw")] == [True, False, False]
    monkeypatch.setattr(indexes, "faiss_gpu_count", lambda: 1)  # faiss-gpu: exact and IVF
    assert [build.search_on_gpu(config(i)) for i in ("exact", "ivf", "hnsw")] == [True, True, False]
