"""
GHPO (Guided Hybrid Policy Optimization, Liu et al., arXiv 2507.10628) in one file.

One RL step (../shared/GHPO_SPEC.md, "One training step"), as coded in the loop of main() below:
  1. take the next B problems and sample G completions each (rollout.py)
  2. score every completion with verify.py: accuracy reward in {0, 1}
  3. from step `start_hint_step` on, for w in hint_ratios (0.25, 0.5, 0.75): every group whose G answers are all wrong
     is sampled again, whole, from  problem + HINT + solution[:round(len(solution) * w)]  (same step); with
     hint_in_answer the prefix (whole step lines) opens the answer instead and the model continues it
  4. group-normalised advantages  A = (r - mean_group(r)) / (std_group(r) + 1e-4)
  5. clipped policy-gradient loss over completion tokens only (kernels/loss.py), ppo_epochs updates with AdamW,
     cosine learning rate with warm-up and grad-norm clipping
At evaluation there are no hints. `method` switches to the paper's baselines: grpo, grpo_cl, grpo_cl_hint, dapo.
Around this file: configurator.py reads the settings, checkpoint.py writes and resumes checkpoints, distributed.py
joins torchrun's ranks, probes.py holds the diagnostics printed before RL, and data/demo_base.py makes the CPU demo's
base model (with settings of its own).

    python ghpo.py --config small.py                          # CPU demo: the shipped base model, then GHPO
    python ghpo.py --config small.py --method=grpo --seed=3 --out_dir=out/x
    python ghpo.py --config qwen2.5-math-1.5b.py                 # a real checkpoint on MATH levels 3-5 (one GPU)
    python ghpo.py --config qwen2.5-math-1.5b.py --resume=True   # continue from out_dir's latest checkpoint
    python ghpo.py --config qwen2.5-math-1.5b.py --eval_only=True   # the six benchmarks, no hints, paper's table
    torchrun --nproc_per_node=8 ghpo.py --config qwen2.5-math-1.5b.py  # prompts sharded over ranks, grads all-reduced
    torchrun --nproc_per_node=8 ghpo.py --config qwen2.5-7b.py         # fsdp=True: weights and AdamW state sharded
"""
import json
import math
import os
import random
import re
import shutil
import sys
import time

import torch

import checkpoint
import configurator
import probes
from configurator import UsageError
from data import demo_base
from distributed import all_gather, all_sum, close, exit_process, full_state, rank_world, setup, shard, sync_grads

# -----------------------------------------------------------------------------
# configuration: every name below can be set in a config file (plain assignments) or with --key=value
# run
out_dir = "out/ghpo"          # metrics.jsonl, summary.json and checkpoints go here
seed = 0                      # RL seed (problem order, sampling); the base model has its own base_seed
method = "ghpo"               # ghpo | grpo | grpo_cl (curriculum) | grpo_cl_hint (curriculum + fixed hint) | dapo
device = "cpu"                # cpu | cuda
dtype = "float32"             # float32 | bfloat16 (parameters and activations; AdamW then updates float32 master
                              # copies and rounds them back: a bfloat16 weight alone rounds an lr-1e-6 step away)
resume = False                # continue from the latest checkpoint in out_dir (a fresh start if there is none)
threads = 0                   # torch CPU threads (0: torch's default)
fsdp = False                  # under torchrun: shard weights, gradients and AdamW state over the ranks (FSDP2)
debug = False                 # a bad setting or file shows its traceback, not one line (or set GHPO_DEBUG=1)
kernel_impl = "auto"          # kernels/: auto | torch | triton | reference (the plain formula, to check a result)
# task and data
task = "arith"                # arith: the built-in CPU demo task (data/arith.py); math: jsonl files in MATH format
train_file = ""               # task=math: training jsonl (MATH format: problem, solution, answer, level)
train_levels = (1, 2, 3, 4, 5, 6)  # levels the RL prompts are drawn from
eval_levels = (1, 2, 3, 4, 5, 6)   # held-out evaluation levels (arith)
easy_levels = (1, 2, 3)       # the "easy" split; arith: also the levels the base model is trained on
hard_levels = (4, 5)          # the "hard" split: the levels just beyond the base model's training range
eval_per_level = 300          # held-out problems per evaluation level (arith)
benchmarks = ("aime24", "math500", "olympiadbench", "amc23", "minerva", "gpqa_diamond", "gsm8k")  # task=math
                              # evaluation (data/): the paper's six benchmarks, then GSM8K as an extra
gpqa_file = "data/gpqa_diamond.csv"  # GPQA-Diamond, the authors' CSV (not shipped: README); skipped when absent
bench_limit = 0               # rows per benchmark (0: all), for quick runs
aime_samples = 32             # aime24 accuracy: the mean over this many samples per problem (others: greedy)
eval_temperature = 0.6        # temperature of those samples (top_p 0.95); the paper does not state its own
eval_only = False             # evaluate init_from (or the resumed checkpoint) without hints, print the table, exit
chat_template = False         # wrap prompts in the Qwen chat format (real models); the tiny demo model uses plain text
system_prompt = ""            # system message when chat_template is on
# model
init_from = "scratch"         # a Hugging Face checkpoint folder, or scratch: the CPU demo's tiny base model, trained
                              # by SFT and cached (its settings: data/demo_base.py)
# sampling
group_size = 8                # G completions per prompt
max_new_tokens = 64           # completion budget
temperature = 1.0             # sampling temperature (the loss uses the same temperature)
top_k = 50                    # TRL's default
top_p = 1.0                   # nucleus sampling: the smallest set of tokens with this much probability (1.0: off)
# GHPO
hint_ratios = (0.25, 0.5, 0.75)  # hint stages, escalated inside one step while a group is still all wrong
hint_template = "\n The following text is the beginning part of the answer, which you can refer to for solving the problem:\n"
                              # the words between the problem and a hint in the user message (released code's)
hint_in_answer = False        # False: hint in the user message after hint_template (released code); True: the hint
                              # opens the answer, cut at a line boundary, and the model continues it
start_hint_step = 0           # cold start: plain GRPO before this step (released code: 0, paper: 20)
fixed_hint_ratio = 0.5        # grpo_cl_hint: the hint every problem gets
format_reward = 0.0           # weight of the format reward; the paper uses 0.5 (with accuracy 1.0)
format_pattern = r".*\\boxed\{"  # format reward 1 when re.match(format_pattern, completion, DOTALL | MULTILINE)
                              # succeeds, as in the released code (this default: a \boxed{} answer present)
# optimisation
rl_steps = 60                 # RL steps
prompts_per_step = 32         # B problems per step
micro_batch = 64              # rows per forward/backward (gradient accumulation; the loss is normalised globally)
lr = 5e-5                     # AdamW peak learning rate
warmup_frac = 0.1             # cosine schedule with this fraction of warm-up steps
weight_decay = 0.0            # AdamW decoupled weight decay
beta1 = 0.9                   # AdamW beta1
beta2 = 0.999                 # AdamW beta2
grad_clip = 1.0               # max grad norm (the pre-clip norm is logged)
ppo_epochs = 1                # updates per batch (mu); 1 is the released code (ratio == 1, the clip never bites)
eps_low = 0.2                 # clip range below 1
eps_high = 0.2                # clip range above 1
kl_coef = 0.0                 # beta of the k3 KL to the frozen base model (released code: 0, no reference model)
loss_norm = "token"           # token: sum over tokens / tokens in the batch (released code); sequence: paper Eq. 1;
                              # dr_grpo: sum over tokens / (rows x max_new_tokens), TRL's "dr_grpo"
eval_interval = 0             # evaluate every this many RL steps as well (0: only before and after)
probe_per_level = 100         # problems per level for the hint, pass@G and step probes printed before RL (0: skip)
ckpt_interval = 0             # write a checkpoint every this many RL steps (0: only at the end)
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str, tuple))]
# -----------------------------------------------------------------------------

METHODS = ("ghpo", "grpo", "grpo_cl", "grpo_cl_hint", "dapo")
ROOT = os.path.dirname(os.path.abspath(__file__))


def configure(argv):
    """Apply `--config FILE.py` and `--key=value` to these settings and the demo base's; returns {key: value}."""
    cfg = configurator.configure(argv, [globals(), vars(demo_base)], ROOT)
    for key, known in (("method", METHODS), ("loss_norm", ("token", "sequence", "dr_grpo")),
                       ("task", ("arith", "math"))):
        if cfg[key] not in known:
            raise UsageError(f"{key} must be one of {', '.join(known)}, got {cfg[key]!r}")
    try:
        re.compile(cfg["format_pattern"])
    except re.error as e:
        raise UsageError(f"format_pattern: not a regular expression ({e}): {cfg['format_pattern']!r}") from None
    return cfg

# -----------------------------------------------------------------------------
# prompts and hints


def step_lines(problem):
    """The step lines of a worked solution, without its final answer line."""
    return problem["solution"].split("\n")[:-1]


def first_steps(problem, k):
    """The first k step lines of a worked solution, each ending with its newline: where the model would continue."""
    return "".join(line + "\n" for line in step_lines(problem)[:k])


def solution_prefix(problem, ratio):
    """The part of the reference solution a hint of this ratio gives away: its first round(len * ratio) characters
    (GHPO_SPEC.md), or with hint_in_answer its first round(steps * ratio) step lines (never the answer line), so the
    model continues from a line boundary exactly as if it had written those lines itself."""
    if ratio <= 0:
        return ""
    if not hint_in_answer:
        return problem["solution"][:round(len(problem["solution"]) * ratio)]
    return first_steps(problem, round(len(step_lines(problem)) * ratio))


def hint_text(problem, ratio):
    """The hint of GHPO_SPEC.md appended to the user message: the template, then the solution prefix. No hint for
    ratio 0, and none in the user message when hint_in_answer puts it at the start of the answer."""
    if ratio <= 0 or hint_in_answer:
        return ""
    return hint_template + solution_prefix(problem, ratio)


def prompt_text(problem, ratio=0.0):
    """The prompt the model sees: the problem (plus the hint, appended to the user message as the released code
    does, or opening the answer with hint_in_answer), in the chat format for real models or as plain text for the
    demo model. Hint tokens are prompt tokens: they never enter the loss."""
    from model import chat_prompt
    user = problem["problem"] + hint_text(problem, ratio)
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompt = chat_prompt(system + [{"role": "user", "content": user}]) if chat_template else user + "\n"
    return prompt + (solution_prefix(problem, ratio) if hint_in_answer else "")

# -----------------------------------------------------------------------------
# sampling, scoring and the GHPO hint escalation


def format_ok(text):
    """The format reward's test, as the released code computes it (GHPO_SPEC.md, the reward)."""
    return re.match(format_pattern, text, re.DOTALL | re.MULTILINE) is not None


def grade(text, problem):
    """The accuracy reward: a multiple-choice problem's option letter (GPQA), else verify.py's answer equivalence."""
    from verify import verify, verify_choice
    return verify_choice(text, problem["answer"]) if problem.get("choices") else verify(text, problem["answer"])


def sample_and_score(model, tok, problems, ratios, stop_ids, generator):
    """Sample G completions for each problem's prompt at its hint ratio and verify them. Returns one group dict per
    problem: prompt ids, completion tokens (G, T) and mask, sampled log-probs, accuracy (G,), format (G,), ratio."""
    from rollout import sample_groups
    G = group_size
    prompts = [tok.encode(prompt_text(p, r)).ids for p, r in zip(problems, ratios)]
    out = sample_groups(model, prompts, G, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        stop_ids=stop_ids, generator=generator)
    groups = []
    for i, (p, r) in enumerate(zip(problems, ratios)):
        rows = slice(i * G, (i + 1) * G)
        tokens, mask = out["tokens"][rows], out["mask"][rows]  # (G, T)
        texts = [tok.decode(t[m].tolist(), skip_special_tokens=True) for t, m in zip(tokens, mask)]
        groups.append(dict(problem=p, ratio=r, prompt=prompts[i], tokens=tokens, mask=mask,
                           acc=torch.tensor([float(grade(t, p)) for t in texts]),
                           fmt=torch.tensor([float(format_ok(t)) for t in texts]), texts=texts))
    return groups


def rollout_with_hints(model, tok, problems, step, stop_ids, generator):
    """Steps 1-3 of the GHPO step. Returns the final groups and, per group, the hint stage it ended at
    (0: no hint, s: hint_ratios[s-1])."""
    ratios = [fixed_hint_ratio if method == "grpo_cl_hint" else 0.0] * len(problems)
    groups = sample_and_score(model, tok, problems, ratios, stop_ids, generator)
    stage = [0] * len(problems)
    if method == "ghpo" and step >= start_hint_step:
        for s, w in enumerate(hint_ratios, 1):
            hard = [i for i, g in enumerate(groups) if g["acc"].sum() == 0]  # detection: accuracy reward only
            if not hard:
                break
            # the whole group is regenerated from the hinted prompt: hinted and unhinted samples never mix
            regen = sample_and_score(model, tok, [problems[i] for i in hard], [w] * len(hard), stop_ids, generator)
            for i, g in zip(hard, regen):
                groups[i], stage[i] = g, s
    return groups, stage


def mechanism(acc, stage, levels):
    """Per step: hard_unsolved, the fraction of hard-level groups whose G unhinted samples all failed (no GRPO signal),
    and hint_rescued, the fraction of hinted groups a hint gave a correct sample (None: no such group). acc: (P, G)."""
    solved = [bool(a.sum() > 0) for a in acc]
    hard = [bool(s) or not ok for ok, s, lv in zip(solved, stage, levels) if lv in hard_levels]
    hinted = [ok for ok, s in zip(solved, stage) if s]
    return {"hard_unsolved": sum(hard) / len(hard) if hard else None,
            "hint_rescued": sum(hinted) / len(hinted) if hinted else None}


def problem_order(train):
    """The order RL visits problems: shuffled (seeded), or easy to hard for the curriculum baselines. The curriculum
    sorts the problems this run will visit (rl_steps * prompts_per_step of the shuffled order), so a run shorter than
    the dataset still goes from easy to hard instead of spending every step on the easiest level."""
    order = train[:]
    random.Random(seed).shuffle(order)
    if method in ("grpo_cl", "grpo_cl_hint"):
        n = min(len(order), rl_steps * prompts_per_step)
        order[:n] = sorted(order[:n], key=lambda p: p["level"] or 0)  # stable: still shuffled within a level
    return order


def trained_groups(acc):
    """Indices of the groups that enter the loss: all of them, or for dapo (dynamic sampling) only groups with a
    learning signal, dropping all-wrong and all-right groups instead of hinting them. acc: (P, G)."""
    if method == "dapo":
        return [i for i in range(len(acc)) if 0 < acc[i].sum() < acc.shape[1]]
    return list(range(len(acc)))


def group_advantages(rewards, eps=1e-4):
    """A_i = (r_i - mean(r)) / (std(r) + eps) within each group (rows of rewards (P, G)); unbiased std as TRL."""
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + eps)  # (P, G)

# -----------------------------------------------------------------------------
# the policy update


def pack_rows(groups):
    """One row per completion: prompt + completion ids, prompt length, group index (prompts are not in the loss)."""
    rows = []
    for gi, g in enumerate(groups):
        for tokens, mask in zip(g["tokens"], g["mask"]):
            n = int(mask.sum())
            rows.append((g["prompt"] + tokens[:n].tolist(), len(g["prompt"]), gi))
    return rows


def batch_tensors(rows, dev):
    """Right-padded (B, L) ids, targets (B, L-1) and loss mask (B, L-1) of completion positions."""
    L = max(len(ids) for ids, _, _ in rows)
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    mask = torch.zeros(len(rows), L - 1)
    for b, (seq, n_prompt, _) in enumerate(rows):
        ids[b, :len(seq)] = torch.tensor(seq)
        mask[b, n_prompt - 1:len(seq) - 1] = 1.0  # position t predicts token t+1: completion tokens only
    return ids.to(dev), ids[:, 1:].to(dev), mask.to(dev)


@torch.no_grad()
def sequence_logprobs(model, rows, dev):
    """Per-token log-probs (B, L-1) of each row's own tokens under `model`, on the prompt actually used (hinted or
    not), at the sampling temperature: the old and reference log-probs of the objective."""
    from kernels.logprob import fused_logprobs
    out = []
    for i in range(0, len(rows), micro_batch):
        ids, targets, _ = batch_tensors(rows[i:i + micro_batch], dev)
        h = model(ids[:, :-1], return_hidden=True)  # (b, L-1, C)
        lp = fused_logprobs(h.flatten(0, 1), model.lm_head.weight, targets.flatten(), temperature=temperature,
                            impl=kernel_impl)
        out.append(lp.view(targets.shape))
    if fsdp:  # FSDP2 keeps the root's weights gathered after a forward (for the backward): back to the shards
        model.reshard()
    return out  # one (b, L-1) tensor per micro-batch


def even_rows(rows, advantages):
    """Under FSDP2 every forward and backward is a collective, so every rank must run as many micro-batches as the
    busiest one: rows without a loss token (two ids, both prompt) pad the others, with zero advantages."""
    pad = max(all_gather(len(rows))) - len(rows)
    advantages = torch.zeros(0) if advantages is None else advantages
    return rows + [([0, 0], 2, -1)] * pad, torch.cat([advantages, advantages.new_zeros(pad)])


def policy_update(model, optimizer, rows, advantages, ref_model, dev):
    """ppo_epochs passes of the clipped objective over the rows, one optimiser step per pass.
    Per token: l = -min(p A, clip(p, 1-eps_low, 1+eps_high) A) + beta KL_k3, p = exp(logp - logp_old)
    (GHPO_SPEC.md, "The objective"; paper Eq. 1 for the sequence-mean normalisation)."""
    from kernels.loss import policy_loss
    if fsdp:
        rows, advantages = even_rows(rows, advantages)
    # old log-probs are only needed when the policy moves between updates of one batch (mu > 1); with one update
    # the ratio is exactly 1, as in the released code, and the kernel uses the detached new log-probs
    old = sequence_logprobs(model, rows, dev) if ppo_epochs > 1 else None
    ref = sequence_logprobs(ref_model, rows, dev) if kl_coef > 0 else None
    n_tokens, n_rows = all_sum(sum(len(seq) - n for seq, n, _ in rows), sum(len(seq) > n for seq, n, _ in rows))
    denom = {"token": n_tokens, "sequence": n_rows, "dr_grpo": n_rows * max_new_tokens}[loss_norm]  # global
    # normaliser across micro-batches and ranks (dr_grpo: rows x the completion budget, TRL's max_completion_length)
    params, master = list(model.parameters()), optimizer.param_groups[0]["params"]
    stats = []
    for epoch in range(ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        for j, i in enumerate(range(0, len(rows), micro_batch)):
            ids, targets, mask = batch_tensors(rows[i:i + micro_batch], dev)
            h = model(ids[:, :-1], return_hidden=True)  # (b, L-1, C)
            loss, st = policy_loss(h, model.lm_head.weight, targets, mask, advantages[i:i + micro_batch],
                                   old_logp=None if old is None else old[j], ref_logp=None if ref is None else ref[j],
                                   eps_low=eps_low, eps_high=eps_high, beta=kl_coef, temperature=temperature,
                                   norm=loss_norm, denom=denom, impl=kernel_impl)
            loss.backward()
            if mask.any():  # even_rows' padding alone has no statistics
                stats.append({k: float(v) for k, v in st.items()} | {"loss": loss.item()})
        sync_grads(model)
        if master[0] is not params[0]:  # float32 master weights (main): AdamW steps them, the model gets them rounded
            for m, p in zip(master, params):
                m.grad = None if p.grad is None else p.grad.float()
        grad_norm = torch.nn.utils.clip_grad_norm_(master, grad_clip)  # pre-clip norm
        if not torch.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)  # skip a non-finite update (loss or gradients), counted by the caller
            model.zero_grad(set_to_none=True)
            return float(grad_norm), stats, False
        optimizer.step()
        if master[0] is not params[0]:
            with torch.no_grad():
                for m, p in zip(master, params):
                    p.copy_(m)
    return float(grad_norm), stats, True

# -----------------------------------------------------------------------------
# evaluation and diagnostics


@torch.no_grad()
def greedy_completions(model, tok, prompts, stop_ids, n_new=None, batch=256, samples=1):
    """Greedy completions of the prompts; with samples > 1, that many samples of each (prompt-major) at
    eval_temperature, top_p 0.95, from a generator seeded with `seed`."""
    from rollout import sample_groups
    texts = []
    generator = torch.Generator(device=model.lm_head.weight.device).manual_seed(seed)
    step = max(1, batch // samples)
    for i in range(0, len(prompts), step):
        out = sample_groups(model, prompts[i:i + step], samples, n_new or max_new_tokens,
                            temperature=0.0 if samples == 1 else eval_temperature, top_p=1.0 if samples == 1 else 0.95,
                            stop_ids=stop_ids, generator=generator)
        texts += [tok.decode(t[m].tolist(), skip_special_tokens=True) for t, m in zip(out["tokens"], out["mask"])]
    return texts


def evaluate(model, tok, eval_sets, stop_ids, ratio=0.0):
    """Accuracy per split without hints (ratio 0): greedy, except aime24 (the mean of aime_samples samples), plus the
    `mean` over the benchmarks or the `easy`/`hard` aggregates. Ranks evaluate every world-th problem, counts summed."""
    from data.datasets import PAPER_BENCHMARKS
    model.eval()
    rank, world = rank_world()
    acc = {}
    for name, problems in eval_sets.items():
        mine, k = problems[rank::world], aime_samples if name == "aime24" else 1
        texts = greedy_completions(model, tok, [tok.encode(prompt_text(p, ratio)).ids for p in mine], stop_ids,
                                   samples=k)
        right, n = all_sum(sum(grade(t, p) for t, p in zip(texts, [p for p in mine for _ in range(k)])), len(texts))
        acc[name] = right / max(n, 1)
    names = [n for n in benchmarks if n in eval_sets]
    names = [n for n in names if n in PAPER_BENCHMARKS] or names  # extras (GSM8K) stay out of the paper's mean
    if names:  # the paper's mean: every benchmark weighs the same
        acc["mean"] = sum(acc[n] for n in names) / len(names)
    return split_means(acc, eval_sets)


def split_means(acc, eval_sets):
    """acc plus the `easy` and `hard` aggregates over the levels it has, each level weighted by its problem count."""
    for split, levels in (("easy", easy_levels), ("hard", hard_levels)):
        names = [f"L{lv}" for lv in levels if f"L{lv}" in acc]
        if names:
            acc[split] = sum(acc[n] * len(eval_sets[n]) for n in names) / sum(len(eval_sets[n]) for n in names)
    return acc


def table_columns(eval_sets):
    """The paper's benchmarks in its order, their mean, then the extras (GSM8K) or the demo's levels and splits."""
    from data.datasets import PAPER_BENCHMARKS
    paper = [n for n in PAPER_BENCHMARKS if n in eval_sets]
    return paper + ["mean"] + [n for n in eval_sets if n not in paper] + ["easy", "hard"]


def print_table(title, rows, columns):
    """rows: {row name: {column: value}}; prints a fixed-width table (on rank 0 only, when it has columns)."""
    if rank_world()[0] or not columns:
        return
    w, r = max([8] + [len(str(c)) + 1 for c in columns]), max([10] + [len(str(n)) + 1 for n in rows])
    print(title)
    print(f"{'':>{r}}" + "".join(f"{c:>{w}}" for c in columns))
    for name, vals in rows.items():
        print(f"{name:>{r}}" + "".join(f"{vals[c]:>{w}.3f}" if c in vals else f"{'-':>{w}}" for c in columns))

# -----------------------------------------------------------------------------
# data


def load_task():
    """Training problems and held-out evaluation sets {split name: problems}."""
    if task == "arith":  # the CPU demo's task (data/arith.py)
        return demo_base.arith_task(train_levels, eval_levels, eval_per_level)
    from data.datasets import math_task  # task=math: a training file in MATH format; the benchmarks in data/
    return math_task(train_file, train_levels, benchmarks, bench_limit, eval_only, gpqa_file)

# -----------------------------------------------------------------------------
# the loop


def main(argv):
    if "--help" in argv or "-h" in argv:
        return print(configurator.help_text([__file__, demo_base.__file__], __doc__.strip()))
    cfg = configure(argv)
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device='cuda' but torch finds no CUDA GPU here; pass --device=cpu to run on the CPU")
    if init_from != "scratch" and not os.path.isfile(os.path.join(init_from, "config.json")):
        raise UsageError(f"init_from: no checkpoint folder (config.json, *.safetensors, tokenizer.json) at "
                         f"{init_from!r}; or 'scratch' for the demo's base model")
    from model import Qwen2, load_tokenizer, stop_token_ids
    if threads:
        torch.set_num_threads(threads)
    t_start = time.time()
    rank, world = setup(device)  # under torchrun: one process per GPU (or per CPU slice)
    master = rank == 0
    if prompts_per_step % world:
        raise UsageError(f"prompts_per_step={prompts_per_step} must be a multiple of the {world} processes")
    if fsdp and world == 1:
        raise UsageError("fsdp=True shards the model over torchrun's processes: use torchrun --nproc_per_node=N>1")
    os.makedirs(out_dir, exist_ok=True)
    dev = torch.device(device, torch.cuda.current_device()) if device == "cuda" else torch.device(device)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    train, eval_sets = load_task()
    # the starting model: a Hugging Face folder, or the demo's SFT base model (trained once by rank 0, then cached)
    scratch = init_from == "scratch"
    base_folder = all_gather(demo_base.base_folder(sys.modules[__name__]) if scratch and master else init_from)[0]
    ckpt = checkpoint.latest(out_dir) if resume else None
    state = checkpoint.load(ckpt, cfg, base_folder, world) if ckpt else None  # atomic; --resume=True
    model = Qwen2.from_pretrained(os.path.join(ckpt, "model") if ckpt else base_folder,
                                  dtype=torch.float32 if fsdp else torch_dtype, device=dev)
    tok = load_tokenizer(base_folder)
    stop_ids = stop_token_ids(tok)
    ref_model = Qwen2.from_pretrained(base_folder, dtype=torch_dtype, device=dev).eval() if kl_coef > 0 else None
    if fsdp:  # FSDP2 (distributed.py): float32 shards, the master weights; each unit computes in dtype
        model, ref_model = shard(model, torch_dtype), ref_model and shard(ref_model, torch_dtype)
    # the model that samples, evaluates and is saved: the training model itself, or under FSDP2 a plain copy of its
    # gathered weights in dtype, made once per rollout phase and freed before the update
    sampler = lambda: Qwen2.from_state_dict(model.config, full_state(model, torch_dtype)).eval() if fsdp else model
    summary = {"method": method, "seed": seed, "config": cfg}
    columns = table_columns(eval_sets)

    if eval_only:  # the paper's table: one column per benchmark, then the mean
        summary["model"] = os.path.join(ckpt, "model") if ckpt else base_folder
        summary["eval"] = evaluate(sampler(), tok, eval_sets, stop_ids)
        summary["eval_rows"] = {k: len(v) for k, v in eval_sets.items()}
        print_table(f"eval (no hints; greedy, aime24 mean of {aime_samples} samples)", {os.path.basename(
            summary["model"].rstrip("/")): summary["eval"]}, [c for c in columns if c in summary["eval"]])
        if master:
            checkpoint.write_json(os.path.join(out_dir, "summary.json"), summary)
        close()
        return summary

    # before RL: the base model's accuracy, and the diagnostics (a resumed run has them in its checkpoint)
    if state:
        summary |= state["summary"]
    else:
        summary["eval_before"] = evaluate(sampler(), tok, eval_sets, stop_ids)
    columns = [c for c in columns if c in summary["eval_before"]]
    print_table("eval before RL (no hints)", {"base": summary["eval_before"]}, columns)
    if master and task == "arith":
        demo_base.check_recorded(base_folder, summary["eval_before"])  # a shipped base: is it the measured model?
    if probe_per_level and task == "arith" and not state:  # does GHPO have anything to work with? (probes.py)
        summary |= probes.run_all(sys.modules[__name__], sampler(), tok, eval_sets, stop_ids, columns)

    order = problem_order(train)
    generator = torch.Generator(device=dev).manual_seed(seed + 100003 * rank)  # one sampling stream per rank
    params = list(model.parameters())  # below float32, AdamW updates float32 master copies (policy_update)
    weights = params if params[0].dtype == torch.float32 else [p.detach().float().requires_grad_() for p in params]
    optimizer = torch.optim.AdamW(weights, lr=lr, betas=(beta1, beta2), eps=1e-8, weight_decay=weight_decay)
    warmup = max(1, round(warmup_frac * rl_steps))
    schedule = lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / rl_steps)))
    if state and fsdp:  # its float32 weights and AdamW moments, each rank reading its own shards
        checkpoint.load_sharded(ckpt, model, optimizer)
    start, skipped_updates = checkpoint.restore(state, optimizer, weights, generator, rank) if state else (0, 0)
    if state and master:
        print(f"resumed from {ckpt} at step {start}")
    metrics_file = checkpoint.metrics_log(out_dir, start) if master else None  # cut back to the checkpoint's step
    per_rank = prompts_per_step // world
    ckpt_state = lambda: {"config": summary["config"], "base": base_folder, "skipped_updates": skipped_updates,
                          "summary": {k: v for k, v in summary.items() if k not in ("config",)}}

    for step in range(start, rl_steps):
        t0 = time.time()
        for group in optimizer.param_groups:
            group["lr"] = lr * schedule(step)
        model.eval()
        batch = [order[(step * prompts_per_step + i) % len(order)] for i in range(prompts_per_step)]
        problems = batch[rank * per_rank:(rank + 1) * per_rank]  # this rank's slice: whole groups on one rank
        groups, stage = rollout_with_hints(sampler(), tok, problems, step, stop_ids, generator)
        acc = torch.stack([g["acc"] for g in groups])  # (P, G)
        rewards = acc + format_reward * torch.stack([g["fmt"] for g in groups])  # (P, G)
        adv = group_advantages(rewards)  # (P, G)
        keep = trained_groups(acc)
        rows = pack_rows([groups[i] for i in keep])
        row_adv = adv[keep].flatten().to(dev) if keep else None  # (rows,)
        model.train()
        n_rows = all_sum(len(rows))[0]  # every rank takes part in the update when any rank has rows
        grad_norm, stats, updated = (policy_update(model, optimizer, rows, row_adv, ref_model, dev)
                                     if n_rows else (0.0, [], False))
        skipped_updates += not updated and bool(n_rows)

        # the step's metrics over all ranks, in the global batch's order
        parts = all_gather((acc.tolist(), rewards.tolist(), stage, sum(int(g["mask"].sum()) for g in groups), stats))
        acc, rewards = torch.tensor([a for p in parts for a in p[0]]), torch.tensor([r for p in parts for r in p[1]])
        stage, stats = [s for p in parts for s in p[2]], [s for p in parts for s in p[4]]
        n_tokens = sum(p[3] for p in parts)
        dt = time.time() - t0
        record = {
            "step": step, "reward": rewards.mean().item(), "accuracy": acc.mean().item(),
            "hinted": {str(w): sum(s == k for s in stage) / len(stage) for k, w in enumerate(hint_ratios, 1)},
            "all_wrong": (acc.sum(1) == 0).float().mean().item(),  # groups with no signal after hints
            "response_len": n_tokens / acc.numel(), "grad_norm": grad_norm,
            "tokens_per_s": n_tokens / dt, "step_s": dt, "lr": optimizer.param_groups[0]["lr"],
            "skipped_updates": skipped_updates,  # non-finite loss or gradients: the update was skipped
        } | mechanism(acc, stage, [p["level"] for p in batch]) | ({k: sum(s[k] for s in stats) / len(stats)
                                                                  for k in stats[0]} if stats else {})
        if master:
            print(json.dumps(record), file=metrics_file, flush=True)
            hinted = " ".join(f"{v:.2f}" for v in record["hinted"].values())
            print(f"step {step:4d} | reward {record['reward']:.3f} | acc {record['accuracy']:.3f} | hinted {hinted} | "
                  f"len {record['response_len']:.1f} | gnorm {grad_norm:.3f} | {record['tokens_per_s']:.0f} tok/s | "
                  f"eta {dt * (rl_steps - step - 1):.0f}s", flush=True)
        if eval_interval and (step + 1) % eval_interval == 0 and step + 1 < rl_steps:
            mid = evaluate(sampler(), tok, eval_sets, stop_ids)
            if master:
                print("eval", " ".join(f"{k} {v:.3f}" for k, v in mid.items()))
                print(json.dumps({"step": step, "eval": mid}), file=metrics_file, flush=True)
        if ckpt_interval and (step + 1) % ckpt_interval == 0:
            checkpoint.save(out_dir, step + 1, model, optimizer, generator, ckpt_state(), base_folder,
                            full=sampler() if fsdp else None)

    final = sampler()
    checkpoint.save(out_dir, rl_steps, model, optimizer, generator, ckpt_state(), base_folder,  # resume: only evaluates
                    full=final if fsdp else None)
    summary["eval_after"] = evaluate(final, tok, eval_sets, stop_ids)
    print_table("eval (no hints)", {"before": summary["eval_before"], "after": summary["eval_after"]}, columns)
    summary |= {"skipped_updates": skipped_updates, "wall_seconds": time.time() - t_start}
    if master:
        final.save_pretrained(os.path.join(out_dir, "model"))  # under FSDP2: the gathered weights, in dtype
        shutil.copy2(os.path.join(base_folder, "tokenizer.json"), os.path.join(out_dir, "model"))
        checkpoint.write_json(os.path.join(out_dir, "summary.json"), summary)
        metrics_file.close()
        print(f"done in {summary['wall_seconds']:.0f}s -> {out_dir}/summary.json")
    close()
    return summary


def cli(argv):
    """`python ghpo.py ...`: main(argv), and for a bad setting, file or argument one line on stderr and exit status 2
    (with --debug=True or GHPO_DEBUG=1 the traceback instead)."""
    try:
        main(argv)
    except UsageError as e:
        if debug or "--debug=True" in argv or os.environ.get("GHPO_DEBUG"):
            raise
        print(f"ghpo.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    exit_process(cli(sys.argv[1:]))
