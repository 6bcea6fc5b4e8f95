#!/usr/bin/env bash
# The checks only a CUDA GPU can make, on one GPU (docs/gpu.md says what each checks). Each step's log, exit status
# and seconds go to --logs (out/device), archived to $OUT/device_logs.tgz after every step when $OUT is set (as on
# the device tool: a run cut short still brings back the steps it finished); --write-results turns them into a
# section of bench/RESULTS.md naming the device, torch and Triton:
#   kernels       tests/test_kernels.py with the Triton kernels compiled (TRITON_INTERPRET unset), policy_update
#                 through the Triton loss included, less the real-shape check and the bench's CPU-mode tests (a)
#   kernel_bench  bench/kernels.py: the Triton kernels against a float64 reference and the same-precision PyTorch
#                 error, H=1536, V=151,936, bf16 and fp32, forward and backward; time and extra memory   (figure a)
#   decode        bench/decode.py: cached decode vs a full forward, the attention kernels that ran, decode tok/s
#                 eager vs CUDA graphs at 128 and 256 rows of a Qwen2.5-1.5B-shaped model, HBM roofline (b, c)
#   engine_graphs bench/engine.py graphs: graph vs eager decoding with stop ids (rows finishing apart, compaction),
#                 captures and seconds over 3 calls in a row                                              (f)
#   eval_call     bench/engine.py eval: OlympiadBench's longest prompts at the planned rows, peak vs the plan (g)
#   memory        bench/memory.py: peak memory of a rollout of 16 prompts x 8 x 2,048 new tokens and of one update
#                 micro-batch at configs/qwen2.5-math-1.5b.py, against the arithmetic                     (figure d)
#   real_shape    bench/real_shape.py on CUDA: 2 GHPO steps of a 0.5B-shaped model through the real config (e)
# The limits leave about 1.5x the time an H200 would need (an H100 has 70% of its memory bandwidth); together they
# pass the device tool's 600 s a command, so run it as two calls (--dry-run prints them).
#
#   bash bench/device.sh                 # every step, then append the figures to bench/RESULTS.md
#   bash bench/device.sh --list          # the steps, one per line: name, time limit (s), command
#   bash bench/device.sh --dry-run       # what it would run, the files to carry, the two calls (no GPU needed)
#   bash bench/device.sh --only decode,memory --logs out/device
#   bash bench/device.sh --write-results LOG_DIR   # (re)write the RESULTS.md section from a run's logs
# Nothing here needs a package the GPU machine's image lacks. real_shape and eval_call need the Qwen2.5 tokenizer: it
# is built from qwen-agent's ranks where that is installed, else read from out/real_shape/tokenizer (carry it).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1  # a step stopped at its time limit keeps what it printed

STEPS=(kernels kernel_bench decode engine_graphs eval_call memory real_shape)
declare -A LIMIT=([kernels]=90 [kernel_bench]=90 [decode]=150 [engine_graphs]=90 [eval_call]=90 [memory]=80
                  [real_shape]=150)  # seconds: 330 + 410 in the two calls
declare -A CMD=(
  [kernels]="env -u TRITON_INTERPRET python -m pytest -q -p no:cacheprovider -k 'not realistic and not bench_kernels' tests/test_kernels.py"
  [kernel_bench]="python bench/kernels.py --device cuda"
  [decode]="python bench/decode.py --device cuda"
  [engine_graphs]="python bench/engine.py graphs --device cuda"
  [eval_call]="python bench/engine.py eval --device cuda"
  [memory]="python bench/memory.py --device cuda"
  [real_shape]="python bench/real_shape.py --device cuda"
)
CALLS=("kernels,kernel_bench,decode" "engine_graphs,eval_call,memory,real_shape")  # each within 600 s
CARRY="out/real_shape/tokenizer"  # made here by: python data/qwen_tokenizer.py out/real_shape/tokenizer
declare -A FIGURE=([kernel_bench]=kernels)  # the name a step's figure line starts with, where not the step's own
RESULTS=bench/RESULTS.md

die() { echo "bench/device.sh: $*" >&2; exit 2; }

# the figure line of a step's log: the `name: key=value` line of a bench, the pytest summary of the kernel tests
figure() {
  local step=$1 log=$2
  if [[ $step == kernels ]]; then
    grep -E '[0-9]+ (passed|failed)' "$log" | tail -n 1 | sed -E 's/=+//g; s/^ +| +$//g'
  else
    grep -E "^${FIGURE[$step]:-$step}: " "$log" | tail -n 1
  fi
}

write_results() {  # LOG_DIR: append one section to RESULTS.md from LOG_DIR/{device.txt,STEP.log,STEP.rc,STEP.s}
  local dir=$1 step
  [[ -f $dir/device.txt ]] || die "$dir/device.txt: not found (a run's log folder holds it)"
  {
    echo
    echo "## GPU: $(head -n 1 "$dir/device.txt")"
    echo
    echo "Measured on $(date -u +%F) by \`bash bench/device.sh\` ($(sed -n 2p "$dir/device.txt"))."
    echo
    echo "| command | last line | exit | seconds |"
    echo "|---|---|---|---|"
    for step in "${STEPS[@]}"; do
      [[ -f $dir/$step.rc ]] || continue
      echo "| \`${CMD[$step]}\` | \`$(figure "$step" "$dir/$step.log" || true)\` | $(cat "$dir/$step.rc") |" \
           "$(cat "$dir/$step.s") |"
    done
  } >> "$RESULTS"
  echo "appended the figures of $dir to $RESULTS"
}

list=0 dry=0 only="" logs="out/device"
while (($#)); do
  case $1 in
    --list) list=1 ;;
    --dry-run) dry=1 ;;
    --only) (($# > 1)) || die "--only needs a comma-separated list of steps"; only=$2; shift ;;
    --logs) (($# > 1)) || die "--logs needs a folder"; logs=$2; shift ;;
    --results) (($# > 1)) || die "--results needs a file"; RESULTS=$2; shift ;;
    --write-results) (($# > 1)) || die "--write-results needs a log folder"; write_results "$2"; exit ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

selected=("${STEPS[@]}")
if [[ -n $only ]]; then
  IFS=, read -ra selected <<< "$only"
  for step in "${selected[@]}"; do
    [[ -n ${CMD[$step]:-} ]] || die "--only: unknown step '$step' (steps: ${STEPS[*]})"
  done
fi

if ((list || dry)); then
  for step in "${selected[@]}"; do
    if ((list)); then printf '%s\t%s\t%s\n' "$step" "${LIMIT[$step]}" "${CMD[$step]}"
    else echo "timeout ${LIMIT[$step]} ${CMD[$step]} > $logs/$step.log"; fi
  done
  if ((dry)); then
    echo "carry: $CARRY (python data/qwen_tokenizer.py $CARRY)"
    for call in "${CALLS[@]}"; do
      IFS=, read -ra part <<< "$call"
      total=0; for step in "${part[@]}"; do total=$((total + LIMIT[$step])); done
      echo "call: bash bench/device.sh --only $call  # at most $total s"
    done
  fi
  exit 0
fi

if ! command -v python > /dev/null; then  # an image with python3 only: the commands below say python
  mkdir -p out/bin && ln -sf "$(command -v python3)" out/bin/python && export PATH="$PWD/out/bin:$PATH"
fi
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" ||
  die "no CUDA device visible to torch: these checks need one GPU (--dry-run shows what they run)"
mkdir -p "$logs"
python -c "import torch, triton; print(torch.cuda.get_device_name()); print(f'torch {torch.__version__}, CUDA \
{torch.version.cuda}, triton {triton.__version__}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB')" \
  > "$logs/device.txt"
echo "device: $(head -n 1 "$logs/device.txt"); $(sed -n 2p "$logs/device.txt"); logs in $logs"
archive() {  # the logs so far, to $OUT (the device tool brings back what is there even when a step runs out of time)
  [[ -z ${OUT:-} ]] || tar -czf "$OUT/device_logs.tgz" -C "$logs" . 2> /dev/null || echo "could not archive to \$OUT"
}
archive
failed=0
for step in "${selected[@]}"; do
  echo "== $step (limit ${LIMIT[$step]} s): ${CMD[$step]}"
  start=$SECONDS
  timeout "${LIMIT[$step]}" bash -c "${CMD[$step]}" > "$logs/$step.log" 2>&1
  rc=$?
  echo "$rc" > "$logs/$step.rc"
  echo "$((SECONDS - start))" > "$logs/$step.s"
  tail -n 8 "$logs/$step.log"
  ((rc == 0)) || { failed=1; echo "== $step failed (exit $rc$( ((rc == 124)) && echo ', time limit'))"; }
  archive
done
write_results "$logs"
archive && [[ -n ${OUT:-} ]] && echo "logs archived to \$OUT/device_logs.tgz"
exit $failed
