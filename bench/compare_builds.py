"""Compare two label builds of the same captions (e.g. two sentence-model backends, or two index settings).

    python bench/compare_builds.py LABELS_A LABELS_B [--sources sbert,cider]

Reads the shards of both folders, joins them on (image_id, caption_id) and prints, for every source column both
hold: Spearman's rho and Pearson's r over the common pairs, and the largest absolute difference; plus the pair
counts and the Jaccard index of the two candidate sets (an approximate index or slightly different embeddings
change which pairs are candidates). The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from bcls.data.infra.errors import ShardError
from bcls.data.shards import open_labels, read_labels


def read_build(folder: Path, sources: list[str] | None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(image ids, caption ids, {source: scores}) of a finished label folder (manifest and checksums checked)."""
    try:
        labels = open_labels(folder)
    except ShardError as err:  # one line, not a traceback
        raise SystemExit(str(err)) from None
    table = read_labels(labels, [c for c in labels.sources if sources is None or c in sources])
    names = [c for c in table.column_names if c not in ("image_id", "caption_id")]
    return (table.column("image_id").to_numpy().astype(np.int64), table.column("caption_id").to_numpy(),
            {c: table.column(c).to_numpy() for c in names})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--sources", default=None, help="only these source columns (comma-separated)")
    args = parser.parse_args(argv)
    wanted = args.sources.split(",") if args.sources else None
    (img_a, cap_a, ca), (img_b, cap_b, cb) = (read_build(f, wanted) for f in (args.a, args.b))
    stride = 1 + max(int(cap_a.max(initial=0)), int(cap_b.max(initial=0)))  # one key space for both builds
    ka, kb = img_a * stride + cap_a, img_b * stride + cap_b
    common, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    out = {"pairs_a": int(len(ka)), "pairs_b": int(len(kb)), "common": int(len(common)),
           "jaccard": round(len(common) / max(len(ka) + len(kb) - len(common), 1), 4), "sources": {}}
    for name in [c for c in ca if c in cb]:
        x, y = ca[name][ia].astype(np.float64), cb[name][ib].astype(np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        out["sources"][name] = {"spearman": round(float(stats.spearmanr(x[ok], y[ok])[0]), 5),
                                "pearson": round(float(np.corrcoef(x[ok], y[ok])[0, 1]), 5),
                                "max_abs_diff": round(float(np.abs(x[ok] - y[ok]).max()), 5), "pairs": int(ok.sum())}
        print(f"{name:>8}: {out['sources'][name]}", flush=True)
    print(f"pairs {out['pairs_a']} / {out['pairs_b']}, common {out['common']} (Jaccard {out['jaccard']})")
    print(json.dumps(out), file=sys.stdout, flush=True)
    return out


if __name__ == "__main__":
    main()
