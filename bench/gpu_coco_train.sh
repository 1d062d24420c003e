#!/usr/bin/env bash
# The prepared GPU check of issue 33: a training epoch at COCO size on one GPU, bcls against VSE∞ (not yet run:
# no GPU was lent to the sessions that wrote it). Run from the repository root on a CUDA machine whose Python has
# torch, sentence-transformers and pyarrow (see bench/gpu_full_build.sh for the wheels that travel with the tree):
#   BUDGET_S=540 bash bench/gpu_coco_train.sh            # device tool: carry=[".devdata"]
# with VSE∞'s code and wheels made beforehand on a machine with a network (about 16 MB; .devdata is git-ignored):
#   git -C VSE_INFTY_CHECKOUT archive HEAD -- train.py arguments.py lib | tar -x -C .devdata/vse_infty
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     -d .devdata/vse_whl transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2 safetensors==0.8.0 \
#     tensorboard_logger==0.1.0 six==1.17.0 protobuf==5.29.5 imageio==2.38.2
# A CPU dry run of the VSE∞ step on the small folder of the dry run below (2 min; stopped by its budget):
#   DEVICE=cpu STEPS=vse BUDGET_S=150 VSE_ARGS="--img_dim 64 --batch_size 32 --workers 1 --log_step 10" \
#     bash bench/gpu_coco_train.sh
#
# 1. make:   a COCO-shaped precomp folder on the machine's own disk ($WORK, default /tmp/coco_shape):
#            113,287 train images × 36 regions × 2,048 float16 (16.7 GB) and 5 captions each, drawn from
#            $DATA/coco_full.parquet when it is there (bench/bench_coco_full.py table), else random words;
# 2. labels: sbert labels of its 566,435 train captions on the GPU (the full-COCO build took 37 s on an H200);
# 3. epoch:  bench/coco_size_epoch.py epoch --model vse-gpo --batch-size 128: samples/s with data loading, the
#            in-batch labels' share of the step, peak GPU memory and nvidia-smi utilisation, λ = 0 then λ = 0.3,
#            then λ = 0.3 with the trainer's former host-side inputs (--host-inputs: features cast and dense labels
#            computed on the CPU) for an A/B; EPOCH_STEPS (default 1000 of the epoch's 4,425 steps) keeps the three
#            variants inside the budget;
# 4. vse:    VSE∞'s own train.py (woodfrog/vse_infty, as it is, from $VSE_INFTY, default $DATA/vse_infty: a
#            `git archive` of its train.py, arguments.py and lib/) on the same folder, linked as precomp/, at batch
#            128 until the budget ends; its log lines' timestamps give samples/s (steps 100 apart, the first 100
#            left out as warm-up). Its needs, none of which this machine can download:
#            - transformers < 5 (its Python BertTokenizer's basic_tokenizer is gone in 5), tensorboard_logger (with
#              six and protobuf) and imageio: wheels in $DATA/vse_whl are installed into /tmp/vse_pkgs, ahead of
#              the system's packages for this run only (tensorboard_logger's old generated protobuf code needs the
#              pure-Python protobuf). The wheels used: transformers 4.57.6, tokenizers 0.22.2, huggingface_hub
#              0.36.2, safetensors 0.8.0, tensorboard_logger 0.1.0, six 1.17.0, protobuf 5.29.5, imageio 2.38.2;
#            - opencv (cv2): imported by its raw-image loader, which precomp training never builds; a stub module
#              stands in when cv2 is absent, and fails if anything uses it;
#            - bert-base-uncased: when the Hugging Face cache ($HF_HOME) lacks it, bench/offline_bert.py writes a
#              stand-in into /tmp/vse_hf: BERT-base's shapes with random weights and a vocabulary of the captions'
#              words,
#              so the speed is VSE∞'s and its recalls mean nothing (gpu.txt says which it used).
#            A CPU dry run (DEVICE=cpu) runs it through bench's .cuda()-as-no-op wrapper, since VSE∞ calls .cuda()
#            unconditionally; VSE_ARGS adds options (e.g. "--img_dim 64 --batch_size 32" for the small dry run).
# Figures and logs go to $OUT (default /tmp/gpu_out): gpu.txt, make.log, labels.log, epoch.txt, vse.log.
# The inputs travel as ignored paths: run(carry=[".devdata"]) with $DATA/vse_infty and $DATA/vse_whl there.
set -uo pipefail   # no -e: a failing step is reported and the next one still runs
# MAKE_ARGS and EPOCH_ARGS add options to steps 1 and 3 (a small dry run on a CPU:
#   DEVICE=cpu MAKE_ARGS="--images 400 --dim 64" EPOCH_ARGS="--batch-size 32" EPOCH_STEPS=12 bash bench/gpu_coco_train.sh)
BUDGET_S=${BUDGET_S:-540} STEPS=${STEPS:-make labels epoch vse} EPOCH_STEPS=${EPOCH_STEPS:-1000}
MAKE_ARGS=${MAKE_ARGS:-} EPOCH_ARGS=${EPOCH_ARGS:-}
export DATA=${DATA:-.devdata} OUT=${OUT:-/tmp/gpu_out} WORK=${WORK:-/tmp/coco_shape} DEVICE=${DEVICE:-cuda}
left() { echo $(( BUDGET_S - SECONDS )); }
want() { [[ " $STEPS " == *" $1 "* ]]; }
mkdir -p "$OUT" /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/bcls   # the repository root is the bcls package
export PYTHONPATH=/tmp/pkg:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"; df -h /tmp | tail -1 | tee -a "$OUT/gpu.txt"

if want make; then
  CAPS=(); [[ -f "$DATA/coco_full.parquet" ]] && CAPS=(--captions "$DATA/coco_full.parquet")
  timeout $(( $(left) / 3 )) python3 bench/coco_size_epoch.py make --out "$WORK" "${CAPS[@]}" $MAKE_ARGS > "$OUT/make.log" 2>&1
  echo "make: rc $? at ${SECONDS}s" | tee -a "$OUT/gpu.txt"; tail -2 "$OUT/make.log"
fi
if want labels; then
  timeout $(( $(left) / 3 )) python3 bench/coco_size_epoch.py labels --data "$WORK" --device "$DEVICE" \
    > "$OUT/labels.log" 2>&1
  echo "labels: rc $? at ${SECONDS}s" | tee -a "$OUT/gpu.txt"; grep "phase\|done" "$OUT/labels.log" | tail -5
fi
if want epoch; then
  timeout $(( $(left) * 2 / 3 )) python3 bench/coco_size_epoch.py epoch --data "$WORK" --device "$DEVICE" \
    --steps "$EPOCH_STEPS" --host-inputs $EPOCH_ARGS > "$OUT/epoch.txt" 2>&1
  echo "epoch: rc $? at ${SECONDS}s" | tee -a "$OUT/gpu.txt"; tail -6 "$OUT/epoch.txt"
fi
if want vse; then
  export VSE_INFTY=${VSE_INFTY:-$PWD/$DATA/vse_infty}; VSE_ARGS=${VSE_ARGS:-}
  rm -rf /tmp/vse_pkgs /tmp/vse_run && mkdir -p /tmp/vse_pkgs/stubs /tmp/vse_data/coco
  if compgen -G "$DATA/vse_whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/vse_pkgs "$DATA"/vse_whl/*.whl 2>&1 | tail -2
  fi
  python3 -c "import cv2" 2>/dev/null || printf '%s\n' '"""Stub: VSE∞ imports cv2 for raw images only."""' \
    'def __getattr__(name):' '    raise ImportError(f"cv2.{name}: opencv is not installed (stub for a precomp run)")' \
    > /tmp/vse_pkgs/stubs/cv2.py
  export VSE_PATH=/tmp/vse_pkgs:/tmp/vse_pkgs/stubs:$VSE_INFTY
  has_bert() { PYTHONPATH=$VSE_PATH HF_HOME=$1 python3 -c \
    "from transformers import BertTokenizer as T; T.from_pretrained('bert-base-uncased')" > /dev/null 2>&1; }
  VSE_HF=${HF_HOME:-$HOME/.cache/huggingface}   # the real model when the cache has it, else the stand-in
  has_bert "$VSE_HF" || { VSE_HF=/tmp/vse_hf; has_bert "$VSE_HF" || PYTHONPATH=$VSE_PATH python3 \
    bench/offline_bert.py --captions "$WORK/train_caps.txt" --hf-home "$VSE_HF" >> "$OUT/gpu.txt" 2>&1; }
  VSE_ENV=(PYTHONPATH="$VSE_PATH" HF_HOME="$VSE_HF" PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python)  # its runs' env
  missing=$(env "${VSE_ENV[@]}" python3 - <<'EOF'
import importlib, os
need = []
for module in ("tensorboard_logger", "imageio", "cv2", "transformers"):
    try:
        importlib.import_module(module)
    except Exception as e:
        need.append(f"{module} ({type(e).__name__}: {e})")
if not os.path.isfile(os.path.join(os.environ.get("VSE_INFTY", ""), "train.py")):
    need.append("$VSE_INFTY (train.py, arguments.py, lib/ of woodfrog/vse_infty)")
try:
    from transformers import BertTokenizer
    assert hasattr(BertTokenizer.from_pretrained("bert-base-uncased"), "basic_tokenizer"), "transformers >= 5"
except Exception as e:
    need.append(f"a BertTokenizer for bert-base-uncased with basic_tokenizer ({type(e).__name__}: {e})")
print(", ".join(need))
EOF
)
  if [[ -n "$missing" ]]; then
    echo "vse: skipped, missing: $missing" | tee -a "$OUT/gpu.txt"
  else
    stand_in=$(ls "$VSE_HF"/hub/models--bert-base-uncased/snapshots/*/bcls_stand_in.json 2>/dev/null)
    echo "vse: bert-base-uncased from $VSE_HF${stand_in:+, the random-weight stand-in of bench/offline_bert.py}" \
      | tee -a "$OUT/gpu.txt"
    ln -sfn "$WORK" /tmp/vse_data/coco/precomp   # VSE∞ reads DATA_PATH/precomp/{split}_caps.txt, {split}_ims.npy
    RUN=(train.py); [[ "$DEVICE" == cpu ]] && RUN=("$PWD/bench/cpu_run_vse.py" train.py)
    (cd "$VSE_INFTY" && timeout $(( $(left) - 10 )) env "${VSE_ENV[@]}" python3 "${RUN[@]}" \
      --data_path /tmp/vse_data/coco --data_name coco_precomp --logger_name /tmp/vse_run/log \
      --model_name /tmp/vse_run --num_epochs 1 --batch_size 128 --workers 8 --log_step 100 \
      --precomp_enc_type basic --embed_size 1024 --vse_mean_warmup_epochs 1 $VSE_ARGS) \
      > "$OUT/vse.log" 2>&1
    rc=$?; note=""; [[ $rc == 124 ]] && note=" (stopped at the budget, as planned)"
    echo "vse: rc $rc at ${SECONDS}s$note" | tee -a "$OUT/gpu.txt"
    python3 - "$OUT/vse.log" <<'EOF' | tee -a "$OUT/gpu.txt"
import datetime, re, sys
# VSE∞ logs "2026-12-06 17:02:15,839 Epoch: [0][9/63] ..." every --log_step steps; batch size from its options
text = open(sys.argv[1]).read()
batch = int(re.search(r"batch_size=(\d+)", text).group(1)) if "batch_size=" in text else 128
marks = [(datetime.datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f"), int(i)) for t, i in
         re.findall(r"^(\S+ \S+) Epoch: \[0\]\[(\d+)/\d+\]", text, re.M)]
if len(marks) < 3:
    print(f"vse: {len(marks)} step lines in its log, too few for a rate")
else:
    (t0, i0), (t1, i1) = marks[1], marks[-1]  # the first logged stretch is warm-up
    print(f"vse: {(i1 - i0) * batch / (t1 - t0).total_seconds():.1f} samples/s over steps {i0}..{i1} (batch {batch})")
EOF
  fi
fi
echo "done at ${SECONDS}s" | tee -a "$OUT/gpu.txt"
