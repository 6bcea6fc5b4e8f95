#!/usr/bin/env bash
# The checks only a CUDA GPU can make, in one run of at most 8 minutes on one GPU, every figure appended to
# bench/RESULTS.md with the device named (docs/real.md says what each step checks):
#   kernels      tests/test_kernels.py with the Triton kernels compiled (TRITON_INTERPRET unset)
#   logprob      bench/logprob.py, bfloat16, N=8192 tokens, V=151,936 (Triton fused vs full-logits reference)
#   rollout      bench/rollout.py, bfloat16, Qwen2.5-0.5B's shape, 16 prompts x G=8 = 128 rows x 512 new tokens
#   real_shape   bench/real_shape.py on CUDA: 2 GHPO steps of the 0.5B-shaped model through the real config
#
#   bash bench/device.sh                 # every step, then append the figures to bench/RESULTS.md
#   bash bench/device.sh --list          # the steps, one per line: name, time limit (s), command
#   bash bench/device.sh --dry-run       # what it would run, without running it (no GPU needed)
#   bash bench/device.sh --only logprob,rollout --logs out/device
#   bash bench/device.sh --write-results LOG_DIR   # (re)write the RESULTS.md section from a run's logs
set -uo pipefail
cd "$(dirname "$0")/.."

STEPS=(kernels logprob rollout real_shape)
declare -A LIMIT=([kernels]=120 [logprob]=90 [rollout]=150 [real_shape]=120)  # seconds; 480 in all
declare -A CMD=(
  [kernels]="env -u TRITON_INTERPRET python -m pytest -q -p no:cacheprovider tests/test_kernels.py"
  [logprob]="python bench/logprob.py --device cuda --dtype bfloat16 --tokens 8192 --vocab 151936 --repeats 2"
  [rollout]="python bench/rollout.py --device cuda --dtype bfloat16 --shape 0.5b --prompts 16 --G 8 --new 512 --repeats 2"
  [real_shape]="python bench/real_shape.py --device cuda"
)
RESULTS=bench/RESULTS.md

die() { echo "bench/device.sh: $*" >&2; exit 2; }

# the figure line of a step's log: the `name: key=value` line of a bench, the pytest summary of the kernel tests
figure() {
  local step=$1 log=$2
  if [[ $step == kernels ]]; then
    grep -E '[0-9]+ (passed|failed)' "$log" | tail -n 1 | sed -E 's/=+//g; s/^ +| +$//g'
  else
    grep -E "^${step}: " "$log" | tail -n 1
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

list=0 dry=0 only="" logs="${OUT:-out}/device"
while (($#)); do
  case $1 in
    --list) list=1 ;;
    --dry-run) dry=1 ;;
    --only) (($# > 1)) || die "--only needs a comma-separated list of steps"; only=$2; shift ;;
    --logs) (($# > 1)) || die "--logs needs a folder"; logs=$2; shift ;;
    --results) (($# > 1)) || die "--results needs a file"; RESULTS=$2; shift ;;
    --write-results) (($# > 1)) || die "--write-results needs a log folder"; write_results "$2"; exit ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
  exit 0
fi

python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" ||
  die "no CUDA device visible to torch: these checks need one GPU (--dry-run shows what they run)"
mkdir -p "$logs"
python -c "import torch; print(torch.cuda.get_device_name()); print(f'torch {torch.__version__}, CUDA {torch.version.cuda}')" \
  > "$logs/device.txt"
echo "device: $(head -n 1 "$logs/device.txt"); logs in $logs"
failed=0
for step in "${selected[@]}"; do
  echo "== $step (limit ${LIMIT[$step]} s): ${CMD[$step]}"
  start=$SECONDS
  timeout "${LIMIT[$step]}" ${CMD[$step]} > "$logs/$step.log" 2>&1
  rc=$?
  echo "$rc" > "$logs/$step.rc"
  echo "$((SECONDS - start))" > "$logs/$step.s"
  tail -n 3 "$logs/$step.log"
  ((rc == 0)) || { failed=1; echo "== $step failed (exit $rc$( ((rc == 124)) && echo ', time limit'))"; }
done
write_results "$logs"
exit $failed
