"""
The real-model path at a real model's size: a random-weight model with Qwen2.5-0.5B's config (24 layers, hidden 896,
MLP 4864, 14 heads, 2 KV heads, vocab 151,936, tied embeddings, rope_theta 1e6) saved as a Hugging Face folder with
the real Qwen2.5 tokenizer (data/qwen_tokenizer.py), trained GHPO steps through configs/qwen2.5-math-1.5b.py (chat
template and system prompt, MATH level 3-5 rows, bfloat16 with float32 master weights, the tag-format reward) with a
tiny token budget and few prompts, then evaluated on 2 rows per benchmark, before and after. What it checks, and
exits non-zero on: every step updated (no skipped update), the groups had mixed rewards and a non-zero gradient, the
saved weights moved, and both evaluations cover every benchmark present.

A random model almost never writes a right answer, so every group would be all wrong, every advantage zero and the
update a no-op (a first run, with "5" alone made likely, wrote runs like 5555555 and scored 0). So the tokens "5" and
" " are made likely, about equally, and no more likely after themselves (steer()): completions then read like
"x 5  55 5", and the problems are MATH rows whose answer is 5, so the verifier's last-number rule scores some samples
right (7 of 16 on a 2-layer model of this width at --lift 2).

    python bench/real_shape.py                 # CPU (bfloat16 GEMMs; a few minutes on 2 cores)
    python bench/real_shape.py --device cuda   # bench/device.sh
Last line: `real_shape: wall_s=... peak_rss_gib=... [peak_cuda_gib=...] ...`.
"""
import argparse
import json
import os
import resource
import shutil
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import ghpo  # noqa: E402
from data import qwen_tokenizer  # noqa: E402
from data.datasets import BENCHMARKS  # noqa: E402
from model import Qwen2, Qwen2Config, load_tokenizer  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

# Qwen2.5-0.5B's config.json, less what model.py does not read
QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1e6,
                  rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151643)
ANSWER = "5"


def steer(model, tokens, column=0, base=1.0, lift=2.0):
    """Make `tokens` likely everywhere: every embedding row gets `base` in one column, which then dominates the
    residual stream and the final norm's output, and each of `tokens` becomes base + lift in that column and 0
    elsewhere, so its logit (tied head) is about lift * h[column] above the others'. Zero elsewhere: a random row
    would also favour its own token right after it (x . w_v is largest for the token just read), hence runs."""
    with torch.no_grad():
        w = model.model.embed_tokens.weight  # (V, C), also the head
        w[:, column] = base
        for t in tokens:
            w[t] = 0.0
            w[t, column] = base + lift


def build_model(folder, tokenizer_file, lift):
    """The random 0.5B-shaped Hugging Face folder (cached: about 1 GB in bfloat16)."""
    if os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return
    tok = load_tokenizer(os.path.dirname(tokenizer_file))
    model = Qwen2.from_config(Qwen2Config(**QWEN25_05B), seed=0, dtype=torch.bfloat16)
    steer(model, [tok.token_to_id(ANSWER), tok.encode(" ").ids[0]], lift=lift)
    model.save_pretrained(folder)
    shutil.copy2(tokenizer_file, os.path.join(folder, "tokenizer.json"))  # last: marks the folder complete


def train_file(path, n):
    """The n shortest MATH level 3-5 rows whose answer is ANSWER, as a jsonl train file."""
    with open(os.path.join(ROOT, "data", "math_train_l345.jsonl")) as f:
        rows = [r for r in map(json.loads, f) if r["answer"].strip() == ANSWER]
    rows.sort(key=lambda r: len(r["problem"]) + len(r["solution"]))
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows[:n])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", default=os.path.join(ROOT, "out", "real_shape"))
    p.add_argument("--tokenizer", default="", help="a prebuilt tokenizer.json (default: build it from qwen-agent)")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--prompts", type=int, default=2, help="prompts per step")
    p.add_argument("--group", type=int, default=4, help="G samples per prompt")
    p.add_argument("--new", type=int, default=16, help="max new tokens (training and evaluation)")
    p.add_argument("--bench-rows", type=int, default=2, help="rows per benchmark")
    p.add_argument("--lift", type=float, default=2.0, help="see steer()")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible to torch")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    tokenizer_file = args.tokenizer or os.path.join(args.out, "tokenizer", "tokenizer.json")
    if not os.path.isfile(tokenizer_file):
        qwen_tokenizer.write_tokenizer(os.path.dirname(tokenizer_file))
    folder = os.path.join(args.out, f"Qwen2.5-0.5B-shape-random-steer2-lift{args.lift:g}")
    build_model(folder, tokenizer_file, args.lift)
    train = os.path.join(args.out, "train.jsonl")
    train_file(train, args.steps * args.prompts)
    run = os.path.join(args.out, "run")
    shutil.rmtree(run, ignore_errors=True)
    t_setup = time.perf_counter() - t0

    summary = ghpo.main(["--config", "qwen2.5-math-1.5b.py", f"--init_from={folder}", f"--device={args.device}",
                         f"--out_dir={run}", f"--train_file={train}", f"--rl_steps={args.steps}",
                         f"--prompts_per_step={args.prompts}", f"--group_size={args.group}",
                         f"--max_new_tokens={args.new}", f"--bench_limit={args.bench_rows}",
                         f"--aime_samples={args.bench_rows}"])
    wall = time.perf_counter() - t0
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    peak_cuda = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None

    # what must hold for the run to count
    lines = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    problems = []
    if [m["step"] for m in lines] != list(range(args.steps)) or lines[-1]["skipped_updates"]:
        problems.append(f"steps {[m['step'] for m in lines]}, skipped updates {lines[-1]['skipped_updates']}")
    if not any(0 < m["accuracy"] < 1 for m in lines) or not any(m["grad_norm"] > 0 for m in lines):
        problems.append("no step had mixed rewards and a non-zero gradient: the update was a no-op")
    before, after = load_file(os.path.join(folder, "model.safetensors")), \
        load_file(os.path.join(run, "model", "model.safetensors"))
    moved = sum(not torch.equal(before[k], after[k]) for k in before)
    if not moved:
        problems.append("no saved tensor changed")
    for key in ("eval_before", "eval_after"):
        missing = [b for b in ghpo.benchmarks if b not in summary[key]
                   and os.path.isfile(os.path.join(ROOT, "data", BENCHMARKS[b][0]))]
        if missing:
            problems.append(f"{key} lacks {missing}")
    shutil.rmtree(os.path.join(run, f"ckpt-{args.steps:06d}"), ignore_errors=True)  # ~7 GB of optimizer state
    for line in problems:
        print(f"real_shape: FAILED: {line}")
    step_s = sum(m["step_s"] for m in lines) / len(lines)
    print(f"setup {t_setup:.0f} s (tokenizer, random model, train rows); ghpo.main {summary['wall_seconds']:.0f} s; "
          f"{moved}/{len(before)} saved tensors moved; accuracy per step "
          f"{[round(m['accuracy'], 3) for m in lines]}, grad norm {[round(m['grad_norm'], 4) for m in lines]}")
    print(f"real_shape: wall_s={wall:.0f} peak_rss_gib={peak_rss:.1f}"
          + (f" peak_cuda_gib={peak_cuda:.1f}" if peak_cuda is not None else "")
          + f" step_s={step_s:.1f} ghpo_s={summary['wall_seconds']:.0f} steps={args.steps} rows_per_step="
          f"{args.prompts * args.group} new_tokens={args.new} device={args.device} ok={int(not problems)}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
