"""A stand-in for ``bert-base-uncased`` in a Hugging Face cache, for timing VSE∞'s own ``train.py`` where the real
model cannot be downloaded (the GPU machines reach no network; see ``bench/gpu_coco_train.sh``).

    python bench/offline_bert.py --captions /tmp/coco_shape/train_caps.txt --hf-home /tmp/vse_hf

VSE∞ loads ``BertTokenizer.from_pretrained('bert-base-uncased')`` and ``BertModel.from_pretrained(...)`` by name.
This writes, under ``HF_HOME/hub/models--bert-base-uncased``, a snapshot that resolves offline
(``HF_HUB_OFFLINE=1``):

* ``config.json``: BERT-base's published architecture (12 layers, 12 heads, hidden 768, feed-forward 3,072,
  512 positions, 30,522 word pieces), so every matrix has the real model's shape and a step costs what it would;
* ``model.safetensors``: that architecture's random initialisation (``BertModel(config)``), not BERT's weights;
* ``vocab.txt``: BERT's special tokens at BERT's ids ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103), then
  every word of ``--captions`` (lower-cased, split by the tokenizer's own basic tokenizer) by frequency, then
  filler pieces up to 30,522. Each caption word is one piece, as most COCO words are in the real vocabulary, so
  the sequences have about the real lengths.

Timings made with it are VSE∞'s real speed; its recalls mean nothing (the text tower is untrained), and the
figures say so. The snapshot names itself in ``bcls_stand_in.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

SPECIAL = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
VOCAB_SIZE = 30_522
BERT_BASE = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": VOCAB_SIZE, "hidden_size": 768,
             "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
             "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
             "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0}
REVISION = "0" * 32 + "b0c15000"  # a made-up commit: the snapshot is ours, not the Hub's


def vocabulary(captions: Path) -> list[str]:
    """The 30,522 pieces: BERT's special ids, the captions' words by frequency, then filler."""
    from transformers.models.bert.tokenization_bert import BasicTokenizer

    basic = BasicTokenizer(do_lower_case=True)
    counts: collections.Counter[str] = collections.Counter()
    with open(captions, encoding="utf-8") as f:
        for line in f:
            counts.update(basic.tokenize(line))
    pieces = [SPECIAL.get(i, f"[unused{i - 1}]") for i in range(104)]
    taken = set(pieces)
    words = [w for w, _ in counts.most_common() if w not in taken][: VOCAB_SIZE - len(pieces)]
    pieces += words
    pieces += [f"##filler{i}" for i in range(VOCAB_SIZE - len(pieces))]
    return pieces


def write_stand_in(captions: Path, hf_home: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    repo = hf_home / "hub" / "models--bert-base-uncased"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    pieces = vocabulary(captions)
    (snapshot / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    (snapshot / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
    torch.manual_seed(seed)
    BertModel(BertConfig(**BERT_BASE)).save_pretrained(snapshot)  # config.json and model.safetensors
    words = sum(1 for p in pieces if not p.startswith(("[", "##filler")))
    (snapshot / "bcls_stand_in.json").write_text(json.dumps(
        {"what": "random-weight stand-in for bert-base-uncased (same shapes); made by bench/offline_bert.py",
         "captions": str(captions), "caption_words": words, "seed": seed}))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captions", type=Path, required=True, help="caption lines (e.g. a precomp train_caps.txt)")
    parser.add_argument("--hf-home", type=Path, required=True, help="the HF_HOME the VSE∞ run will use")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    snapshot = write_stand_in(args.captions, args.hf_home, args.seed)
    print(json.dumps({"snapshot": str(snapshot), **json.loads((snapshot / "bcls_stand_in.json").read_text())}))


if __name__ == "__main__":
    main()
