#!/usr/bin/env bash
# The GPU host's one-shot benchmark, shipped as run.sh in the package that
# `cargo xtask build-cuda --package` makes. Needs nothing but this package,
# the NVIDIA driver and CUDA 13's cuBLAS and cuRAND libraries (found in the
# usual places, PyTorch's wheels included; or name their directory in
# CUDA_LIB_DIRS). About 5 minutes on an H100/H200.
#
#   ./run.sh              GPU: 1B and 8B random Llama models, Q4_K and F16
#   ./run.sh --cpu        the same steps on the CPU with a tiny model (checks
#                         the script and the package anywhere)
#   ./run.sh --out DIR    where the results and the table go (default ./results)
#   ./run.sh --work DIR   where the models and data directories go (default
#                         $TMPDIR/conductor-gpu-bench; 25 GB free for GPU mode)
#
# Steps: make each model (gpu-kit make-model, tokenizer from the pinned
# SmolLM2 file); `conductor models check` (typed errors if the GPU cannot
# run it); GPU copy bandwidth; for each model a `conductor serve` with it on
# the GPU, driven through the metered gateway at 1, 8, 32 and 128
# concurrent requests; greedy parity of the GPU against the CPU on the same
# file; the sample mission on the GPU through cells, budget and journal,
# then `audit verify`; one table (results/table.md).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BIN="$HERE/bin/conductor"
KIT="$HERE/bin/gpu-kit"
MODE=gpu
OUT="$PWD/results"
WORK="${TMPDIR:-/tmp}/conductor-gpu-bench"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu ;;
    --out) OUT="$2"; shift ;;
    --work) WORK="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$MODE" = gpu ]; then
  DEVICE=cuda SIZES="1b 8b" QUANTS="q4k f16" LEVELS=1,8,32,128 TOKENS=64 PARITY=1b-q4k
  # cuBLAS and cuRAND for CUDA 13: from CUDA_LIB_DIRS, a CUDA install, or
  # a Python environment's nvidia wheels.
  dirs="${CUDA_LIB_DIRS:-}"
  # (A venv's wheels sit 9 levels down: /opt/torch/.venv/lib/python3.12/
  # site-packages/nvidia/cu13/lib/libcublas.so.13.)
  for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13; do
    found=$(find ${CUDA_LIB_DIRS:-} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
      /usr/lib/x86_64-linux-gnu /opt /usr/local/lib /usr/lib/python3* -maxdepth 10 -name "$lib" 2>/dev/null | head -1 || true)
    [ -n "$found" ] && dirs="$dirs:$(dirname "$found")"
  done
  export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  DEVICE=cpu SIZES="tiny" QUANTS="q4k f16" LEVELS=1,8 TOKENS=16 PARITY=tiny-q4k
fi

rm -rf "$WORK" && mkdir -p "$WORK/models" "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.jsonl "$OUT"/mission.txt "$OUT"/table.md
log() { printf '\n== %s\n' "$*" >&2; }
started=$(date +%s)

registry_entry() { # NAME FILE DEVICE
  printf '  %s:\n    file: %s\n    sha256: %s\n    context_tokens: 4096\n    device: %s\n    prompt_price: 1\n    completion_price: 1\n' \
    "$1" "$2" "$(sha256sum "$2" | cut -d' ' -f1)" "$3"
}

MODELS=""
for size in $SIZES; do
  for quant in $QUANTS; do
    name="$size-$quant"
    log "making $name"
    "$KIT" make-model --size "$size" --quant "$quant" --tokenizer-from "$HERE/tokenizer.gguf" \
      --out "$WORK/models/$name.gguf"
    "$KIT" weights "$WORK/models/$name.gguf" > "$OUT/weights-$name.json"
    MODELS="$MODELS $name"
  done
done

# One registry per server: each GPU model runs alone, as paged attention
# sizes its KV cache from the GPU memory left after loading.
for name in $MODELS; do
  { echo "models:"; registry_entry "$name" "$WORK/models/$name.gguf" "$DEVICE"
    [ "$name" = "$PARITY" ] && registry_entry "$name-cpu" "$WORK/models/$name.gguf" cpu
  } > "$WORK/$name.yaml"
done

log "conductor models check (each model on its device)"
for name in $MODELS; do
  "$BIN" models check --models "$WORK/$name.yaml"
done

if [ "$MODE" = gpu ]; then
  log "GPU copy bandwidth"
  "$KIT" bandwidth > "$OUT/bandwidth.json"
  cat "$OUT/bandwidth.json"
fi

log "operator key and a gateway client key"
DATA="$WORK/data"
"$BIN" keys new --role operator --out "$WORK/operator.key" > /dev/null
"$BIN" keys register --init --data "$DATA" "$WORK/operator.key" > /dev/null
export GPU_KIT_KEY=$("$BIN" gateway issue --data "$DATA" --name bench --limit 1000000000000 \
  --key "$WORK/operator.key" --json | sed -n 's/.*"key": *"\([^"]*\)".*/\1/p')
[ -n "$GPU_KIT_KEY" ] || { echo "run.sh: no gateway key issued" >&2; exit 1; }

SERVER=""
stop_server() {
  if [ -n "$SERVER" ]; then kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=""; fi
}
trap stop_server EXIT
start_server() { # REGISTRY
  "$BIN" serve --data "$DATA" --models "$1" --bind 127.0.0.1:0 > "$WORK/serve.out" 2>> "$WORK/serve.err" &
  SERVER=$!
  for _ in $(seq 1 300); do
    ADDR=$(sed -n 's|^listening on http://||p' "$WORK/serve.out")
    [ -n "$ADDR" ] && return 0
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.err" >&2; exit 1; }
    sleep 0.1
  done
  echo "run.sh: conductor serve did not start (see $WORK/serve.err)" >&2; exit 1
}

for name in $MODELS; do
  start_server "$WORK/$name.yaml"
  if [ "$name" = "$PARITY" ]; then
    log "parity: $name on $DEVICE against the CPU, greedy"
    "$KIT" compare --addr "$ADDR" --reference "$name-cpu" --candidate "$name" > "$OUT/parity.jsonl" \
      || echo "run.sh: parity outside the tolerance (recorded in the table)" >&2
  fi
  log "decode throughput: $name at $LEVELS concurrent requests"
  "$KIT" load --addr "$ADDR" --model "$name" --concurrency "$LEVELS" --max-tokens "$TOKENS" | tee "$OUT/load-$name.jsonl"
  stop_server
done

log "the sample mission on $DEVICE, through cells, budget and journal"
MISSION_DATA="$WORK/mission-data"
{ echo "models:"; registry_entry smollm2-135m "$WORK/models/$PARITY.gguf" "$DEVICE"; } > "$WORK/mission-models.yaml"
set +e
"$BIN" run "$HERE/missions/casework/mission.yaml" --data "$MISSION_DATA" --models "$WORK/mission-models.yaml" \
  --concurrency 8 > "$WORK/mission.out" 2> "$WORK/mission.err"
run_status=$?
"$BIN" audit verify --data "$MISSION_DATA" > "$WORK/verify.out" 2>&1
verify_status=$?
set -e
summary=$(grep -m1 -i "tasks\|completed\|status" "$WORK/mission.out" | head -c 200 || true)
echo "model $PARITY on $DEVICE; conductor run exit $run_status ($summary); audit verify exit $verify_status ($(head -c 200 "$WORK/verify.out" | tr '\n' ' '))" \
  > "$OUT/mission.txt"
cat "$OUT/mission.txt"

"$KIT" table "$OUT" > "$OUT/table.md"
log "done in $(( $(date +%s) - started )) s: $OUT/table.md"
cat "$OUT/table.md"
[ "$verify_status" -eq 0 ] || { echo "run.sh: the sample mission's journal did not verify" >&2; exit 4; }
