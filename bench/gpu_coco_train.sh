#!/usr/bin/env bash
# The prepared GPU check of issue 33: a training epoch at COCO size on one GPU, bcls against VSE∞ (not yet run:
# no GPU was lent to the session that wrote it). Run from the repository root on a CUDA machine whose Python has
# torch, sentence-transformers and pyarrow (see bench/gpu_full_build.sh for the wheels that travel with the tree):
#   BUDGET_S=540 STEPS="make labels epoch" bash bench/gpu_coco_train.sh
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
# 4. vse:    VSE∞'s own train.py (woodfrog/vse_infty, as it is, from $VSE_INFTY) on the same folder for the same
#            number of steps, when its needs are there: bert-base-uncased in the Hugging Face cache (its train.py
#            loads BertTokenizer.from_pretrained('bert-base-uncased') and the BERT text tower; this machine cannot
#            download it), and tensorboard_logger, opencv-python and imageio installed. Otherwise the step says
#            which is missing and is skipped.
# Figures and logs go to $OUT (default /tmp/gpu_out): gpu.txt, make.log, labels.log, epoch.txt, vse.log.
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
  missing=$(python3 - <<'EOF'
import importlib.util, os
need = [m for m in ("tensorboard_logger", "cv2", "imageio", "transformers") if importlib.util.find_spec(m) is None]
if not os.path.isdir(os.environ.get("VSE_INFTY", "")):
    need.append("$VSE_INFTY (a checkout of woodfrog/vse_infty)")
try:
    from transformers import BertTokenizer
    BertTokenizer.from_pretrained("bert-base-uncased", local_files_only=True)
except Exception:
    need.append("bert-base-uncased in the Hugging Face cache")
print(", ".join(need))
EOF
)
  if [[ -n "$missing" ]]; then
    echo "vse: skipped, missing: $missing" | tee -a "$OUT/gpu.txt"
  else
    # VSE∞ reads DATA_PATH/precomp/{split}_caps.txt and {split}_ims.npy: the same files, linked
    mkdir -p /tmp/vse_data/coco && ln -sfn "$WORK" /tmp/vse_data/coco/precomp
    (cd "$VSE_INFTY" && timeout $(( $(left) - 10 )) python3 train.py --data_path /tmp/vse_data/coco \
      --data_name coco_precomp --logger_name /tmp/vse_run/log --model_name /tmp/vse_run --num_epochs 1 \
      --batch_size 128 --workers 8 --log_step 100 --precomp_enc_type basic --embed_size 1024 \
      --vse_mean_warmup_epochs 1) > "$OUT/vse.log" 2>&1
    echo "vse: rc $? at ${SECONDS}s (its log's per-step times give samples/s)" | tee -a "$OUT/gpu.txt"
  fi
fi
echo "done at ${SECONDS}s" | tee -a "$OUT/gpu.txt"
