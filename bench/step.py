"""
One RL step end to end: ghpo.py's step (ghpo.train_step: rollout_with_hints -> group_advantages -> pack_rows ->
policy_update, as ghpo.main's loop calls it) against TRL's GRPOTrainer, on the same random-weight Qwen2 (~5M
parameters: hidden 256, 4 layers, 4 heads, 2 KV heads, MLP 1024, vocab 4096, tied head) saved once as a Hugging Face
folder that both load.
Plain GRPO on both sides: 8 prompts x G=8, up to 64 new tokens, temperature 1, top_k 50, top_p 1, beta 0 (no
reference model), one update per batch (ratio 1), token-mean loss (TRL loss_type "dapo"), group-std advantages,
AdamW lr 5e-5 (torch's default AdamW on both sides), grad clip 1, float32, no gradient checkpointing.

The reward is the same on both sides: verify.py accuracy + a format reward (a \\boxed{} present, weight 1). The bench
builds a WordLevel tokenizer whose vocabulary holds "\\boxed{0}".."\\boxed{39}" among ~4000 letter words, so a random
model boxes an answer in about half its completions and the groups' rewards differ (the gradient is not zero).
Both stop on <|im_end|> / <|endoftext|>; a random model almost never samples them, so in practice every row of both
samplers runs to the 64-token limit (the same work; the bench prints the mean completion length of each side).

Each side runs in a process of its own (warm-up steps, then timed steps); the parent alternates the sides for
--rounds rounds so that a slow spell of this shared machine hits both, and reports medians over all timed steps.

    python bench/step.py                 # --threads 1: steadier on a CPU shared with other jobs
    python bench/step.py --threads 2
    python bench/step.py --profile       # also: where one timed step's CPU time goes on each side (torch.profiler)
Last line: `step: speedup_vs_trl=<trl/ghpo> ghpo_s=<median s> trl_s=<median s>`; with --profile it adds
`gemm_bound=<trl_s / the GEMM seconds of our profiled step>`: the speedup our step would have if everything in it but
its matrix products took no time.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

P, G, NEW, TOP_K, LR = 8, 8, 64, 50, 5e-5
N_ANSWERS = 40  # gold answers and boxed tokens 0..39
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::addbmm")  # matrix products


def profile_summary(prof):
    """Self CPU seconds of one profiled step: total, in matrix products, and the eight largest ops."""
    ops = sorted(((e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()), key=lambda kv: -kv[1])
    return dict(total=sum(v for _, v in ops), gemm=sum(v for k, v in ops if k in GEMM_OPS),
                top=[(k, round(v, 3)) for k, v in ops[:8]])


def build_folder(path):
    """Random-weight model + tokenizer as one Hugging Face folder (config.json, model.safetensors, tokenizer.json)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from model import Qwen2, Qwen2Config
    letters = "abcdefghijklmnopqrstuvwxyz"
    special = ["<|endoftext|>", "<|im_end|>", "<unk>"]
    words = [str(i) for i in range(N_ANSWERS)] + ["What", "is", "+", "?"] + \
            [f"\\boxed{{{i}}}" for i in range(N_ANSWERS)]
    words += [a + b + c for a in letters for b in letters for c in letters][:4096 - len(special) - len(words)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(special + words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(special)
    config = Qwen2Config(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_theta=10000.0, tie_word_embeddings=True, eos_token_id=[1, 0])
    model = Qwen2.from_config(config, seed=0)
    model.save_pretrained(path)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                            unk_token="<unk>").save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def problems(step):
    """The step's P problems: a + b with the answer in 0..38 (ghpo's problem dicts)."""
    out = []
    for i in range(P):
        a, b = (7 * (step * P + i)) % 20, (11 * (step * P + i) + 3) % 20
        out.append(dict(problem=f"What is {a} + {b} ?", answer=str(a + b), solution=str(a + b), level=1))
    return out

# -----------------------------------------------------------------------------
# ghpo


def run_ghpo(args):
    import ghpo
    import rollout
    from model import Qwen2, load_tokenizer, stop_token_ids
    ghpo.method, ghpo.group_size, ghpo.max_new_tokens, ghpo.temperature = "grpo", G, NEW, 1.0
    ghpo.top_k, ghpo.top_p, ghpo.prompts_per_step, ghpo.micro_batch = TOP_K, 1.0, P, P * G
    ghpo.ppo_epochs, ghpo.kl_coef, ghpo.loss_norm, ghpo.format_reward, ghpo.lr = 1, 0.0, "token", 1.0, LR
    ghpo.hint_in_answer = False  # the prompts as the released code writes them (no hint is given: method grpo)
    dev = torch.device("cpu")
    model = Qwen2.from_pretrained(args.folder, dtype=torch.float32)
    tok = load_tokenizer(args.folder)
    stop_ids = stop_token_ids(tok)
    generator = torch.Generator().manual_seed(0)
    policy = ghpo.make_policy(model)  # AdamW (0.9, 0.999), eps 1e-8, no weight decay

    # timing probes: wrappers around the functions the step calls (each only takes a timestamp)
    t = {}
    def add(key, dt):
        t[key] = t.get(key, 0.0) + dt
    def timed(fn, key):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            add(key, time.perf_counter() - t0)
            return out
        return wrapper
    rollout.sample_groups = timed(rollout.sample_groups, "sampling")  # the step samples through it
    ghpo.sample_and_score = timed(ghpo.sample_and_score, "sample_and_score")
    marks = {}
    model.register_forward_pre_hook(lambda m, a: marks.__setitem__("fwd", time.perf_counter()) if m.training else None)
    model.register_forward_hook(lambda m, a, o: add("forward", time.perf_counter() - marks["fwd"])
                                if m.training else None)
    loss_fn, clip_fn, step_fn = ghpo.policy_loss, torch.nn.utils.clip_grad_norm_, policy.optimizer.step
    def loss_probe(*a, **k):
        marks["loss"] = time.perf_counter()
        return loss_fn(*a, **k)
    def clip_probe(*a, **k):
        now = time.perf_counter()
        add("loss_backward", now - marks["loss"])
        out = clip_fn(*a, **k)
        add("optimizer", time.perf_counter() - now)
        return out
    ghpo.policy_loss, torch.nn.utils.clip_grad_norm_ = loss_probe, clip_probe
    policy.optimizer.step = timed(step_fn, "optimizer")

    def step(s):
        # ghpo.main's step (method grpo: no hints), without its logging
        out = ghpo.train_step(policy, tok, problems(s), s, stop_ids, generator, dev)
        return torch.tensor(out.rewards), out.tokens / (P * G)

    return loop(args, step, t)


def loop(args, step, t):
    """Warm-up steps, then timed steps; prints one JSON line with per-step seconds and breakdowns."""
    times, parts, lens, rewards, summary = [], [], [], [], None
    for s in range(args.warmup + args.steps + args.profile):  # a profiled step is one more
        t.clear()
        prof = torch.profiler.profile() if args.profile and s == args.warmup else None
        if prof:
            prof.start()
        t0 = time.perf_counter()
        r, n = step(s)
        dt = time.perf_counter() - t0
        if prof:
            prof.stop()
            summary, dt = profile_summary(prof), None  # a profiled step's time is not a timing
        if s >= args.warmup and dt is not None:
            times.append(dt)
            parts.append(dict(t))
            lens.append(n)
            rewards.append(float(r.float().mean()))
    print(json.dumps(dict(times=times, parts=parts, completion_len=lens, reward=rewards,
                          threads=torch.get_num_threads(), profile=summary)))

# -----------------------------------------------------------------------------
# TRL


def run_trl(args):
    import datasets
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    import prompts
    from verify import verify
    transformers.logging.set_verbosity_error()
    steps = args.warmup + args.steps + args.profile  # a profiled step is one more
    fmt = prompts.PromptFormat()  # no hint: the problem, then a newline, as on ghpo's side
    data = datasets.Dataset.from_list([dict(prompt=prompts.prompt_text(p, 0.0, fmt), answer=p["answer"])
                                       for s in range(steps) for p in problems(s)])

    def accuracy(completions, answer, **kw):
        return [float(verify(c, a)) for c, a in zip(completions, answer)]

    def boxed(completions, **kw):  # ghpo.py's format reward
        return [float("\\boxed{" in c) for c in completions]

    model = AutoModelForCausalLM.from_pretrained(args.folder, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(args.folder)
    out = tempfile.mkdtemp(prefix="trl-")
    config = GRPOConfig(
        output_dir=out, per_device_train_batch_size=P * G, num_generations=G, gradient_accumulation_steps=1,
        steps_per_generation=1, num_iterations=1, max_completion_length=NEW, temperature=1.0, top_k=TOP_K, top_p=1.0,
        beta=0.0, epsilon=0.2, loss_type="dapo", scale_rewards="group", reward_weights=[1.0, 1.0],
        learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch", weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, gradient_checkpointing=False,
        bf16=False, use_cpu=True, max_steps=steps, logging_steps=10**6, save_strategy="no", report_to="none",
        shuffle_dataset=False, seed=0, disable_dropout=True, log_completions=False, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, reward_funcs=[accuracy, boxed], args=config, train_dataset=data,
                          processing_class=tok)
    if args.threads:
        torch.set_num_threads(args.threads)  # again: in case anything above changed it

    t, marks, results, profiled = {}, {}, [], {}
    generate = model.generate
    def generate_probe(*a, **k):
        t0 = time.perf_counter()
        ids = generate(*a, **k)
        t["generate"] = t.get("generate", 0.0) + time.perf_counter() - t0
        marks["len"] = ids.shape[1] - k["input_ids"].shape[1]  # padded width: the longest completion
        return ids
    model.generate = generate_probe

    class Timer(transformers.TrainerCallback):
        def on_step_begin(self, *a, **k):
            t.clear()
            if args.profile and len(results) == args.warmup:
                profiled["prof"] = torch.profiler.profile()
                profiled["prof"].start()
            marks["t0"] = time.perf_counter()

        def on_step_end(self, *a, **k):
            results.append((time.perf_counter() - marks["t0"], dict(t), marks["len"]))
            if "prof" in profiled and "summary" not in profiled:
                profiled["prof"].stop()
                profiled["summary"] = profile_summary(profiled["prof"])
                results[-1] = None  # a profiled step's time is not a timing

    trainer.add_callback(Timer())
    trainer.train()
    results = [r for r in results[args.warmup:] if r is not None]
    print(json.dumps(dict(times=[r[0] for r in results], parts=[r[1] for r in results],
                          completion_len=[r[2] for r in results], reward=[], threads=torch.get_num_threads(),
                          profile=profiled.get("summary"))))

# -----------------------------------------------------------------------------
# the parent: alternate the two sides, report medians


def child(side, folder, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--folder", folder, "--threads",
           str(args.threads), "--warmup", str(args.warmup), "--steps", str(args.steps)]
    cmd += ["--profile"] * args.profile
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode:
        sys.exit(f"{side} side failed:\n{res.stdout}\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads on both sides (0: torch's default)")
    p.add_argument("--rounds", type=int, default=3, help="ghpo process, TRL process, repeated this many times")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each process")
    p.add_argument("--steps", type=int, default=3, help="timed steps per process")
    p.add_argument("--profile", action="store_true", help="profile each process's first timed step (not timed)")
    p.add_argument("--side", choices=["ghpo", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.side:
        return run_ghpo(args) if args.side == "ghpo" else run_trl(args)

    import trl
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "model")
        n_params = build_folder(folder)
        print(f"model: {n_params / 1e6:.2f}M parameters, vocab 4096; {P} prompts x G={G}, {NEW} new tokens; "
              f"threads {args.threads or torch.get_num_threads()}; torch {torch.__version__}, trl {trl.__version__}")
        runs = {"ghpo": [], "trl": []}
        for r in range(args.rounds):
            for side in ("ghpo", "trl") if r % 2 == 0 else ("trl", "ghpo"):
                runs[side].append(child(side, folder, args))
                print(f"round {r} {side}: " + " ".join(f"{x:.3f}" for x in runs[side][-1]["times"]), flush=True)

    med = {s: statistics.median(x for run in v for x in run["times"]) for s, v in runs.items()}
    for side, v in runs.items():
        lens = [x for run in v for x in run["completion_len"]]
        print(f"{side}: mean completion length {statistics.mean(lens):.1f} tokens (max {NEW}), "
              f"threads in the child {v[0]['threads']}")
    ours = [part for run in runs["ghpo"] for part in run["parts"]]
    parts = {k: statistics.median(pt.get(k, 0.0) for pt in ours) for k in ours[0]}
    breakdown = dict(sampling=parts["sampling"], scoring=parts["sample_and_score"] - parts["sampling"],
                     logprobs_forward=parts["forward"], loss_backward=parts["loss_backward"],
                     optimizer=parts["optimizer"])
    breakdown["other"] = med["ghpo"] - sum(breakdown.values())
    print("ghpo step breakdown (median s): " + " ".join(f"{k}={v:.3f}" for k, v in breakdown.items()))
    theirs = [part for run in runs["trl"] for part in run["parts"]]
    gen = statistics.median(pt.get("generate", 0.0) for pt in theirs)
    print(f"trl step: generate={gen:.3f} rest={med['trl'] - gen:.3f} (median s)")
    last = f"step: speedup_vs_trl={med['trl'] / med['ghpo']:.2f} ghpo_s={med['ghpo']:.3f} trl_s={med['trl']:.3f}"
    if args.profile:  # medians over the processes' profiled steps (profiling adds a little to every op)
        for side, v in runs.items():
            total, gemm = (statistics.median(run["profile"][k] for run in v) for k in ("total", "gemm"))
            print(f"{side} profiled step (median of {len(v)}): self CPU {total:.3f} s, matrix products {gemm:.3f} s "
                  f"({gemm / total:.0%}); largest ops of the first: "
                  + ", ".join(f"{k} {x:.3f}" for k, x in v[0]["profile"]["top"]))
        ghpo_gemm = statistics.median(run["profile"]["gemm"] for run in runs["ghpo"])
        last += f" gemm_bound={med['trl'] / ghpo_gemm:.2f}"
    print(last)


if __name__ == "__main__":
    main()
