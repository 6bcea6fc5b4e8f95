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

    python ghpo.py --config small.py                          # CPU demo: base model by SFT, then GHPO
    python ghpo.py --config small.py --method=grpo --seed=3 --out_dir=out/x
    python ghpo.py --config qwen2.5-math-1.5b.py                 # a real checkpoint on MATH levels 3-5 (one GPU)
    python ghpo.py --config qwen2.5-math-1.5b.py --resume=True   # continue from out_dir's latest checkpoint
    python ghpo.py --config qwen2.5-math-1.5b.py --eval_only=True   # the six benchmarks, no hints, paper's table
    torchrun --nproc_per_node=8 ghpo.py --config qwen2.5-math-1.5b.py  # prompts sharded over ranks, grads all-reduced
"""
import ast
import contextlib
import difflib
import hashlib
import inspect
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

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
kernel_impl = "auto"          # kernels/: auto | torch | triton | reference (the plain formula, to check a result)
# task and data
task = "arith"                # arith: the built-in CPU demo task (data/arith.py); math: jsonl files in MATH format
train_file = ""               # task=math: training jsonl (MATH format: problem, solution, answer, level)
train_levels = (1, 2, 3, 4, 5, 6)  # levels the RL prompts are drawn from
eval_levels = (1, 2, 3, 4, 5, 6)   # held-out evaluation levels (arith)
easy_levels = (1, 2, 3)       # the "easy" split; arith: also the levels the base model is trained on
hard_levels = (4, 5)          # the "hard" split: the levels just beyond the base model's training range
countdown = False             # arith: each step line also says how many steps are left (`37+8=45, 4 left`)
wide_levels = ()              # arith: levels whose addends have two digits (10..99) instead of one
eval_per_level = 300          # held-out problems per evaluation level (arith)
benchmarks = ("aime24", "math500", "olympiadbench", "amc23", "minerva", "gsm8k")  # task=math evaluation (data/*.jsonl)
bench_limit = 0               # rows per benchmark (0: all), for quick runs
aime_samples = 32             # aime24 accuracy: the mean over this many samples per problem (others: greedy)
eval_temperature = 0.6        # temperature of those samples (top_p 0.95); the paper does not state its own
eval_only = False             # evaluate init_from (or the resumed checkpoint) without hints, print the table, exit
chat_template = False         # wrap prompts in the Qwen chat format (real models); the tiny demo model uses plain text
system_prompt = ""            # system message when chat_template is on
# model
init_from = "scratch"         # scratch: train a tiny base model by SFT (cached); else a Hugging Face checkpoint folder
n_layer = 4                   # scratch model: layers
n_embd = 128                  # scratch model: width
n_head = 4                    # scratch model: attention heads
n_kv_head = 2                 # scratch model: key/value heads (grouped-query attention)
n_inner = 384                 # scratch model: MLP width
base_seed = 0                 # seed of the base model's init and SFT data (shared by every method and RL seed)
base_steps = 400              # SFT steps of the base model
base_batch = 32               # SFT rows per step
base_row_len = 256            # SFT row length: several solved problems packed per row, so the base reads long texts
base_lr = 3e-3                # SFT peak learning rate (cosine, 30 warm-up steps)
base_hint_frac = 0.4          # fraction of SFT examples whose prompt carries a hint, so the base knows the hint format
base_partial_frac = 0.0       # fraction of SFT rows that end with a problem of base_partial_levels cut off early
base_partial_levels = (4, 5)  # levels whose first steps (never the last step or the answer) the base reads
base_partial_steps = 0        # at most this many first steps of those problems (0: up to all but the last)
base_tail_frac = 0.0          # fraction of SFT examples that are a base_partial_levels problem finished from late on:
base_tail_steps = 2           # its last base_tail_steps steps and answer learned, the steps before them read as a hint
base_cache = "out/base"       # base models are cached here, keyed by a hash of the settings that define them
# sampling
group_size = 8                # G completions per prompt
max_new_tokens = 64           # completion budget
temperature = 1.0             # sampling temperature (the loss uses the same temperature)
top_k = 50                    # TRL's default
top_p = 1.0
# GHPO
hint_ratios = (0.25, 0.5, 0.75)  # hint stages, escalated inside one step while a group is still all wrong
hint_template = "\n The following text is the beginning part of the answer, which you can refer to for solving the problem:\n"
hint_in_answer = False        # False: hint in the user message after hint_template (released code); True: the hint
                              # opens the answer, cut at a line boundary, and the model continues it
start_hint_step = 0           # cold start: plain GRPO before this step (released code: 0, paper: 20)
fixed_hint_ratio = 0.5        # grpo_cl_hint: the hint every problem gets
format_reward = 0.0           # weight of the format reward (a \boxed{} answer present); the paper uses 0.5
# optimisation
rl_steps = 60                 # RL steps
prompts_per_step = 32         # B problems per step
micro_batch = 64              # rows per forward/backward (gradient accumulation; the loss is normalised globally)
lr = 5e-5                     # AdamW peak learning rate
warmup_frac = 0.1             # cosine schedule with this fraction of warm-up steps
weight_decay = 0.0
beta1 = 0.9
beta2 = 0.999
grad_clip = 1.0               # max grad norm (the pre-clip norm is logged)
ppo_epochs = 1                # updates per batch (mu); 1 is the released code (ratio == 1, the clip never bites)
eps_low = 0.2                 # clip range below 1
eps_high = 0.2                # clip range above 1
kl_coef = 0.0                 # beta of the k3 KL to the frozen base model (released code: 0, no reference model)
loss_norm = "token"           # token: sum over tokens / tokens in the batch (released code); sequence: paper Eq. 1
eval_interval = 0             # evaluate every this many RL steps as well (0: only before and after)
probe_per_level = 100         # problems per level for the hint, pass@G and step probes printed before RL (0: skip)
ckpt_interval = 0             # write a checkpoint every this many RL steps (0: only at the end)
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str, tuple))]
# -----------------------------------------------------------------------------

METHODS = ("ghpo", "grpo", "grpo_cl", "grpo_cl_hint", "dapo")
ROOT = os.path.dirname(os.path.abspath(__file__))


def parse_value(text, default):
    """A --key=value string as the type of its default: a Python literal where one parses, else the raw string."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(default, str):
        return text
    if isinstance(default, bool) and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def check_type(key, value, default, where):
    ok = (isinstance(value, bool) if isinstance(default, bool)
          else isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(default, float)
          else isinstance(value, int) and not isinstance(value, bool) if isinstance(default, int)
          else isinstance(value, (tuple, list)) if isinstance(default, tuple)
          else isinstance(value, type(default)))
    if not ok:
        raise ValueError(f"{where}: {key} must be {type(default).__name__} like its default {default!r}, "
                         f"got {value!r}")
    return tuple(value) if isinstance(default, tuple) else float(value) if isinstance(default, float) else value


def unknown_key(key, where):
    near = difflib.get_close_matches(key, config_keys, n=3, cutoff=0.5)
    return ValueError(f"{where}: unknown config key {key!r}" + (f"; did you mean {', '.join(near)}?" if near else
                                                               "; see the top of ghpo.py for the keys"))


def resolve_config_path(name):
    for candidate in (name, os.path.join(ROOT, name), os.path.join(ROOT, "configs", name)):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"config file {name!r} not found (looked in ., {ROOT} and {ROOT}/configs)")


def configure(argv, namespace):
    """Apply `--config FILE.py` (plain assignments, executed) and `--key=value` overrides to namespace (a module's
    globals). Unknown keys and wrong types are errors; later arguments win."""
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--config" or arg.startswith("--config="):
            name = arg.split("=", 1)[1] if "=" in arg else (args.pop(0) if args else "")
            path = resolve_config_path(name)
            with open(path) as f:
                source = f.read()
            values = {}
            exec(compile(source, path, "exec"), {}, values)
            for key, value in values.items():
                if key.startswith("_") or callable(value) or type(value).__name__ == "module":
                    continue
                line = next((i + 1 for i, text in enumerate(source.splitlines())
                             if text.split("=")[0].strip() == key), "?")
                if key not in config_keys:
                    raise unknown_key(key, f"{path}:{line}")
                namespace[key] = check_type(key, value, namespace[key], f"{path}:{line}")
        elif arg.startswith("--") and "=" in arg:
            key, text = arg[2:].split("=", 1)
            if key not in config_keys:
                raise unknown_key(key, "command line")
            namespace[key] = check_type(key, parse_value(text, namespace[key]), namespace[key], f"--{key}")
        else:
            raise ValueError(f"command line: cannot read argument {arg!r}; use --config FILE.py or --key=value")
    if namespace["method"] not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {namespace['method']!r}")
    if namespace["loss_norm"] not in ("token", "sequence"):
        raise ValueError(f"loss_norm must be 'token' or 'sequence', got {namespace['loss_norm']!r}")
    return {k: namespace[k] for k in config_keys}

# -----------------------------------------------------------------------------
# torch.distributed (torchrun): each rank samples and trains on its own slice of the step's prompts


def rank_world():
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def all_sum(*xs):
    """The sums over ranks of a few numbers (themselves on one process)."""
    if not dist.is_initialized():
        return xs
    t = torch.tensor(xs, dtype=torch.float64, device=device)  # nccl reduces CUDA tensors only
    dist.all_reduce(t)
    return tuple(t.tolist())


def all_gather(obj):
    """[every rank's obj] in rank order ([obj] on one process)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def sync_grads(model):
    """Sum the gradients over ranks. Every rank divides its loss by the global normaliser, so the sum is the
    single-process gradient of the whole batch."""
    if not dist.is_initialized():
        return
    for p in model.parameters():
        if p.grad is None:  # a rank with no rows this step still takes part
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)

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
    solution = problem["solution"]
    if ratio <= 0:
        return ""
    if not hint_in_answer:
        return solution[:round(len(solution) * ratio)]
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
    if chat_template:
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
                   [{"role": "user", "content": user}]
        prompt = chat_prompt(messages)
    else:
        prompt = user + "\n"
    return prompt + (solution_prefix(problem, ratio) if hint_in_answer else "")

# -----------------------------------------------------------------------------
# sampling, scoring and the GHPO hint escalation


def format_ok(text):
    return "\\boxed{" in text


def sample_and_score(model, tok, problems, ratios, stop_ids, generator, G=None):
    """Sample G completions for each problem's prompt at its hint ratio and verify them. Returns one group dict per
    problem: prompt ids, completion tokens (G, T) and mask, sampled log-probs, accuracy (G,), format (G,), ratio."""
    from rollout import sample_groups
    from verify import verify
    G = G or group_size
    prompts = [tok.encode(prompt_text(p, r)).ids for p, r in zip(problems, ratios)]
    out = sample_groups(model, prompts, G, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        stop_ids=stop_ids, generator=generator)
    groups = []
    for i, (p, r) in enumerate(zip(problems, ratios)):
        rows = slice(i * G, (i + 1) * G)
        tokens, mask = out["tokens"][rows], out["mask"][rows]  # (G, T)
        texts = [tok.decode(t[m].tolist(), skip_special_tokens=True) for t, m in zip(tokens, mask)]
        groups.append(dict(problem=p, ratio=r, prompt=prompts[i], tokens=tokens, mask=mask,
                           acc=torch.tensor([float(verify(t, p["answer"])) for t in texts]),
                           fmt=torch.tensor([float(format_ok(t)) for t in texts]), texts=texts))
    return groups


def rollout_with_hints(model, tok, problems, step, stop_ids, generator):
    """Steps 1-3 of the GHPO step. Returns the final groups and, per group, the hint stage it ended at
    (0: no hint, s: hint_ratios[s-1])."""
    use_fixed = method == "grpo_cl_hint"
    ratios = [fixed_hint_ratio if use_fixed else 0.0] * len(problems)
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
    """What decides whether GHPO can beat GRPO, per step: hard_unsolved, the fraction of hard-level groups whose G
    unhinted samples all failed (GRPO learns nothing from them; a hinted group failed unhinted), and hint_rescued, the
    fraction of hinted groups that ended with a correct sample. None where no group qualifies. acc: (P, G)."""
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
    """Each completion as one row: prompt + completion ids, the completion mask over predicted positions, and its
    group's index. Prompt and hint tokens never enter the loss."""
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
    return out  # one (b, L-1) tensor per micro-batch


def policy_update(model, optimizer, rows, advantages, ref_model, dev):
    """ppo_epochs passes of the clipped objective over the rows, one optimiser step per pass.
    Per token: l = -min(p A, clip(p, 1-eps_low, 1+eps_high) A) + beta KL_k3, p = exp(logp - logp_old)
    (GHPO_SPEC.md, "The objective"; paper Eq. 1 for the sequence-mean normalisation)."""
    from kernels.loss import policy_loss
    # old log-probs are only needed when the policy moves between updates of one batch (mu > 1); with one update
    # the ratio is exactly 1, as in the released code, and the kernel uses the detached new log-probs
    old = sequence_logprobs(model, rows, dev) if ppo_epochs > 1 else None
    ref = sequence_logprobs(ref_model, rows, dev) if kl_coef > 0 else None
    n_tokens, n_rows = all_sum(sum(len(seq) - n for seq, n, _ in rows), len(rows))
    denom = n_tokens if loss_norm == "token" else n_rows  # global normaliser across micro-batches and ranks
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
    """Accuracy per split without hints (ratio 0): greedy, except aime24, the mean over aime_samples samples per
    problem. Plus the `easy` and `hard` aggregates (arith levels) or the `mean` over the benchmarks (task=math).
    Under torchrun each rank evaluates every world-th problem and the counts are summed."""
    from verify import verify
    model.eval()
    rank, world = rank_world()
    acc = {}
    for name, problems in eval_sets.items():
        mine, k = problems[rank::world], aime_samples if name == "aime24" else 1
        texts = greedy_completions(model, tok, [tok.encode(prompt_text(p, ratio)).ids for p in mine], stop_ids,
                                   samples=k)
        right, n = all_sum(sum(verify(t, p["answer"]) for t, p in zip(texts, [p for p in mine for _ in range(k)])),
                           len(texts))
        acc[name] = right / max(n, 1)
    names = [n for n in benchmarks if n in eval_sets]
    if names:  # the paper's mean: every benchmark weighs the same
        acc["mean"] = sum(acc[n] for n in names) / len(names)
    for split, levels in (("easy", easy_levels), ("hard", hard_levels)):
        names = [f"L{lv}" for lv in levels if f"L{lv}" in eval_sets]
        if names:  # weighted by problem count
            total = sum(len(eval_sets[n]) for n in names)
            acc[split] = sum(acc[n] * len(eval_sets[n]) for n in names) / total
    return acc


def hint_probe(model, tok, eval_sets, stop_ids):
    """The base model's accuracy per level with a hint of each ratio: does GHPO have anything to work with?"""
    sets = {k: v[:probe_per_level] for k, v in eval_sets.items()}
    return {str(w): evaluate(model, tok, sets, stop_ids, ratio=w) for w in (0.0,) + tuple(hint_ratios)}


@torch.no_grad()
def pass_probe(model, tok, eval_sets, stop_ids):
    """pass@G per level with a hint of each ratio: the fraction of problems for which at least one of G samples, drawn
    as RL draws them (temperature, top_k, top_p), is correct. At ratio 0 it says whether GRPO gets any signal on a
    level (a greedy accuracy of .01 can hide a pass@8 of .1); at the hint ratios, how often GHPO's hints rescue a
    group that fails without one."""
    from verify import verify
    generator = torch.Generator(device=model.lm_head.weight.device).manual_seed(seed)
    table = {}
    for w in (0.0,) + tuple(hint_ratios):
        table[str(w)] = {}
        for name, problems in eval_sets.items():
            groups = sample_and_score(model, tok, problems[:probe_per_level], [w] * len(problems[:probe_per_level]),
                                      stop_ids, generator)
            table[str(w)][name] = sum(bool(g["acc"].sum()) for g in groups) / max(len(groups), 1)
        for split, levels in (("easy", easy_levels), ("hard", hard_levels)):
            names = [f"L{lv}" for lv in levels if f"L{lv}" in table[str(w)]]
            if names:
                table[str(w)][split] = sum(table[str(w)][n] for n in names) / len(names)
    return table


def step_probe(model, tok, eval_sets, stop_ids):
    """Accuracy of solution step k (a line of the reference solution) given the correct steps before it, per level:
    tells whether late steps are the weak ones, i.e. whether hints leave the model something to practise."""
    table = {}
    for name, problems in eval_sets.items():
        cases = []
        for p in problems[:probe_per_level]:
            lines = p["solution"].split("\n")
            for k in range(len(lines)):
                done = "\n".join(lines[:k]) + ("\n" if k else "")
                cases.append((k + 1, tok.encode(prompt_text(p)).ids + tok.encode(done).ids, lines[k]))
        if not cases:
            continue
        n_new = max(len(tok.encode(want).ids) for _, _, want in cases) + 1
        got = greedy_completions(model, tok, [c[1] for c in cases], stop_ids, n_new=n_new)
        per_step = {}
        for (k, _, want), text in zip(cases, got):
            per_step.setdefault(k, []).append(text.split("\n")[0].strip() == want.strip())
        table[name] = {str(k): sum(v) / len(v) for k, v in sorted(per_step.items())}
    return table


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
# data and the base model


def arith_splits(levels):
    """(train, evals) of the built-in task (data/arith.py) at these levels, in the configured format."""
    from data.arith import make_splits
    return make_splits(levels, eval_per_level, countdown=countdown, wide_levels=wide_levels)


def load_task():
    """Training problems and held-out evaluation sets {split name: problems}."""
    if task == "arith":
        train, _ = arith_splits(train_levels)  # held-out problems never enter training
        _, evals = arith_splits(eval_levels)
        return train, {f"L{lv}": [p for p in evals if p["level"] == lv] for lv in eval_levels}
    if task == "math":  # training file in MATH format; evaluation on the benchmarks in data/, no hints
        from data.datasets import BENCHMARKS, load_jsonl
        unknown = [b for b in benchmarks if b not in BENCHMARKS]
        if unknown:
            raise ValueError(f"benchmarks: unknown {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        evals = {}
        for name in benchmarks:
            file, fmt = BENCHMARKS[name]
            evals[name], skipped = load_jsonl(os.path.join(ROOT, "data", file), fmt, limit=bench_limit or None)
            if skipped:
                print(f"{file}: {skipped} rows skipped (empty or unparseable gold answer)")
        if eval_only:
            return [], evals
        path = train_file if os.path.isfile(train_file) else os.path.join(ROOT, train_file)  # cwd, else the repo
        train, skipped = load_jsonl(path, "math", levels=set(train_levels))
        print(f"{train_file}: {len(train)} problems, {skipped} skipped (empty or unparseable gold answer)")
        if not train:
            raise ValueError(f"{train_file}: no problems at train_levels {train_levels}")
        return train, evals
    raise ValueError(f"task must be 'arith' or 'math', got {task!r}")


def base_settings():
    keys = ("task", "n_layer", "n_embd", "n_head", "n_kv_head", "n_inner", "base_seed", "base_steps", "base_batch",
            "base_row_len", "base_lr", "base_hint_frac", "base_partial_frac", "base_partial_levels",
            "base_partial_steps", "base_tail_frac", "base_tail_steps", "easy_levels", "countdown", "wide_levels",
            "eval_per_level", "hint_ratios", "hint_template", "hint_in_answer", "chat_template", "system_prompt")
    with open(os.path.join(ROOT, "data", "arith.py"), "rb") as f:  # a change to the task, tokenizer or SFT retrains
        sft_code = "".join(inspect.getsource(fn) for fn in (sft_batch, train_base, arith_splits, prompt_text,
                                                             hint_text, solution_prefix, first_steps, step_lines))
        task_code = hashlib.sha1(f.read() + sft_code.encode()).hexdigest()
    return {k: globals()[k] for k in keys} | {"task_code": task_code}


def sft_batch(tok, train, hard_train, rng):
    """One SFT batch of the base model: inputs, targets and loss mask (base_batch, base_row_len) each. Each row packs
    solved easy problems (the prompt read, the solution and its end learned; base_hint_frac of the prompts carry a
    hint), and with probability base_partial_frac ends with a problem of base_partial_levels cut off after 1 to n-1 of
    its n steps (at most base_partial_steps). With probability base_tail_frac a packed example is a problem of
    base_partial_levels instead, its first n - base_tail_steps steps read as an answer-opening hint and the rest
    learned: the base can finish a hard problem from late on, not from its start."""
    end, eot = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")
    x = torch.full((base_batch, base_row_len + 1), eot)
    m = torch.zeros(base_batch, base_row_len + 1)
    for b in range(base_batch):
        partial = []  # with probability base_partial_frac the row ends with the first steps of a hard problem
        if rng.random() < base_partial_frac:
            p = rng.choice(hard_train)
            steps = step_lines(p)
            a = tok.encode(prompt_text(p)).ids
            k = rng.randint(1, min(len(steps) - 1, base_partial_steps or len(steps)))
            partial = (a, tok.encode(first_steps(p, k)).ids)
        room = base_row_len + 1 - sum(map(len, partial))
        t = 0
        while True:
            if base_tail_frac and rng.random() < base_tail_frac:  # a hard problem, its early steps given: finish it
                p = rng.choice(hard_train)
                read = first_steps(p, max(0, len(step_lines(p)) - base_tail_steps))
                prompt, rest = prompt_text(p) + read, p["solution"][len(read):]
            else:
                p = rng.choice(train)
                ratio = rng.choice(hint_ratios) if rng.random() < base_hint_frac else 0.0
                prompt = prompt_text(p, ratio)
                rest = p["solution"][len(solution_prefix(p, ratio)):] if hint_in_answer else p["solution"]
            a, c = tok.encode(prompt).ids, tok.encode(rest).ids + [end, eot]
            if t + len(a) + len(c) > room:
                break
            x[b, t:t + len(a) + len(c)] = torch.tensor(a + c)
            m[b, t + len(a):t + len(a) + len(c) - 1] = 1.0  # learn the solution and its end, not the problem
            t += len(a) + len(c)
        if partial:
            a, c = partial
            x[b, t:t + len(a) + len(c)] = torch.tensor(a + c)
            m[b, t + len(a):t + len(a) + len(c)] = 1.0  # the steps, and no end: the row just stops
    return x[:, :-1], x[:, 1:], m[:, 1:]


def train_base(folder):
    """Supervised learning of a tiny Qwen2 on worked solutions of the easy levels only (data/arith.py), several
    examples packed per row; a fraction of the prompts carry a hint so the base knows the hint format. With
    base_partial_frac > 0 a fraction of the rows end with a problem of base_partial_levels whose solution is cut off
    after 1 to n-1 steps (no answer, no end token): the base reads hard problem texts and early steps, but never
    finishes one (DEMO_NOTES.md: a base that never read a problem's length fails on its first step, leaving hints
    nothing to train). Saves model and tokenizer.json to `folder` (atomically)."""
    from data.arith import build_tokenizer, save_tokenizer
    from model import Qwen2, Qwen2Config
    tok = build_tokenizer([hint_template], countdown)
    end = tok.token_to_id("<|im_end|>")
    train, _ = arith_splits(easy_levels)
    hard_train, _ = arith_splits(base_partial_levels)  # held-out problems never enter training
    config = Qwen2Config(vocab_size=tok.get_vocab_size(), hidden_size=n_embd, intermediate_size=n_inner,
                         num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_kv_head,
                         max_position_embeddings=1024, rope_theta=10000.0, tie_word_embeddings=True,
                         eos_token_id=end)
    model = Qwen2.from_config(config, seed=base_seed)
    rng = random.Random(base_seed)
    opt = torch.optim.AdamW(model.parameters(), lr=base_lr, betas=(0.9, 0.95), weight_decay=0.0)
    t0 = time.time()
    for it in range(base_steps):
        x, y, m = sft_batch(tok, train, hard_train, rng)  # (base_batch, base_row_len) each
        for group in opt.param_groups:
            group["lr"] = base_lr * min(1.0, (it + 1) / 30) * 0.5 * (1 + math.cos(math.pi * it / base_steps))
        loss = (F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none") * m.flatten()).sum() / m.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if it % 50 == 0 or it == base_steps - 1:
            print(f"base sft step {it:4d} | loss {loss.item():.4f} | {time.time() - t0:.0f}s", flush=True)
    model.save_pretrained(folder)
    save_tokenizer(tok, folder)


def load_base():
    """The starting checkpoint folder: a Hugging Face checkpoint, or the cached SFT base model (trained once)."""
    if init_from != "scratch":
        return init_from
    key = hashlib.sha1(json.dumps(base_settings(), sort_keys=True).encode()).hexdigest()[:10]
    folder = os.path.join(base_cache, key)
    if not os.path.isfile(os.path.join(folder, "tokenizer.json")):
        print(f"training the base model -> {folder}")
        train_base(folder)
    else:
        print(f"base model: cached {folder}")
    return folder

# -----------------------------------------------------------------------------
# checkpoints: out_dir/ckpt-NNNNNN after NNNNNN RL steps, filled in a temporary folder and renamed into place, so a
# kill at any moment leaves the previous checkpoint or the new one, never a partial one

RESUME_FREE = ("resume", "out_dir", "threads", "ckpt_interval", "eval_interval", "probe_per_level", "eval_only",
               "benchmarks", "bench_limit", "aime_samples", "eval_temperature")  # keys a resumed run may change


def latest_checkpoint():
    names = sorted(n for n in os.listdir(out_dir) if n.startswith("ckpt-")) if os.path.isdir(out_dir) else []
    return os.path.join(out_dir, names[-1]) if names else None


def save_checkpoint(model, optimizer, generator, step, state, tok_folder):
    """Weights (and the float32 master weights of a bfloat16 run), AdamW moments, every rank's sampling generator, the
    python and torch RNGs, the step (which fixes the data position and the learning rate) and the base model
    reference. Called on every rank, written by rank 0."""
    generators = all_gather(generator.get_state().cpu())
    final = os.path.join(out_dir, f"ckpt-{step:06d}")
    if rank_world()[0] or os.path.isdir(final):
        return
    tmp = tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=out_dir)
    model.save_pretrained(os.path.join(tmp, "model"))
    shutil.copy2(os.path.join(tok_folder, "tokenizer.json"), os.path.join(tmp, "model"))  # loadable as init_from
    master = optimizer.param_groups[0]["params"]
    master = None if master[0] is next(model.parameters()) else [m.detach().cpu() for m in master]
    torch.save(state | {"step": step, "data_pos": step * prompts_per_step, "optimizer": optimizer.state_dict(),
                        "master": master, "generators": generators, "python_rng": random.getstate(),
                        "torch_rng": torch.get_rng_state()},
               os.path.join(tmp, "state.pt"))
    os.rename(tmp, final)
    for name in os.listdir(out_dir):  # older checkpoints, and temporary folders a killed run left behind
        if (name.startswith("ckpt-") and name < os.path.basename(final)) or name.startswith(".tmp-ckpt-"):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)


def load_checkpoint(path, base_folder, world):
    """The state of a checkpoint, after checking it belongs to this run."""
    state = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=True)
    now = {k: globals()[k] for k in config_keys}
    changed = [f"{k}={state['config'][k]!r} (now {now[k]!r})" for k in config_keys
               if k not in RESUME_FREE and state["config"].get(k) != now[k]]
    if changed:
        raise ValueError(f"{path}: written with other settings: {', '.join(changed)}; resume with the same ones")
    if state["base"] != base_folder:
        raise ValueError(f"{path}: trained from {state['base']}, this run's base model is {base_folder}")
    if len(state["generators"]) != world:
        raise ValueError(f"{path}: written by {len(state['generators'])} process(es), this run has {world}; "
                         f"resume with the same torchrun --nproc_per_node")
    return state


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)

# -----------------------------------------------------------------------------
# the loop


def main(argv):
    configure(argv, globals())
    from model import Qwen2, load_tokenizer, stop_token_ids
    if threads:
        torch.set_num_threads(threads)
    t_start = time.time()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun: one process per GPU (or per CPU slice)
        if device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    rank, world = rank_world()
    master = rank == 0
    if prompts_per_step % world:
        raise ValueError(f"prompts_per_step={prompts_per_step} must be a multiple of the {world} processes")
    os.makedirs(out_dir, exist_ok=True)
    dev = torch.device(device, torch.cuda.current_device()) if device == "cuda" else torch.device(device)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    train, eval_sets = load_task()
    base_folder = all_gather(load_base() if master else None)[0]  # rank 0 trains the demo base model once
    ckpt = latest_checkpoint() if resume else None
    state = load_checkpoint(ckpt, base_folder, world) if ckpt else None
    model = Qwen2.from_pretrained(os.path.join(ckpt, "model") if ckpt else base_folder, dtype=torch_dtype, device=dev)
    tok = load_tokenizer(base_folder)
    stop_ids = stop_token_ids(tok)
    ref_model = Qwen2.from_pretrained(base_folder, dtype=torch_dtype, device=dev).eval() if kl_coef > 0 else None
    summary = {"method": method, "seed": seed, "config": {k: globals()[k] for k in config_keys}}
    columns = list(eval_sets) + ["mean", "easy", "hard"]

    if eval_only:  # the paper's table: one column per benchmark, then the mean
        summary["model"] = os.path.join(ckpt, "model") if ckpt else base_folder
        summary["eval"] = evaluate(model, tok, eval_sets, stop_ids)
        summary["eval_rows"] = {k: len(v) for k, v in eval_sets.items()}
        print_table(f"eval (no hints; greedy, aime24 mean of {aime_samples} samples)",
                    {os.path.basename(summary["model"].rstrip("/")): summary["eval"]},
                    [c for c in columns if c in summary["eval"]])
        if master:
            write_json(os.path.join(out_dir, "summary.json"), summary)
        if dist.is_initialized():
            dist.destroy_process_group()
        return summary

    # before RL: the base model's accuracy, and the two diagnostics (a resumed run has them in its checkpoint)
    if state:
        summary |= state["summary"]
    else:
        summary["eval_before"] = evaluate(model, tok, eval_sets, stop_ids)
    columns = [c for c in columns if c in summary["eval_before"]]
    print_table("eval before RL (no hints)", {"base": summary["eval_before"]}, columns)
    if probe_per_level and task == "arith" and not state:
        summary["hint_probe"] = hint_probe(model, tok, eval_sets, stop_ids)
        print_table("hint probe: base accuracy with a hint of each ratio", summary["hint_probe"], columns)
        summary["pass_probe"] = pass_probe(model, tok, eval_sets, stop_ids)
        print_table(f"pass@{group_size} probe: a correct sample among {group_size} (temperature {temperature}), per "
                    f"hint ratio", summary["pass_probe"], columns)
        summary["step_probe"] = step_probe(model, tok, eval_sets, stop_ids)
        steps = sorted({k for v in summary["step_probe"].values() for k in v}, key=int)
        print_table("step probe: accuracy of step k given the correct steps before it", summary["step_probe"], steps)

    order = problem_order(train)
    generator = torch.Generator(device=dev).manual_seed(seed + 100003 * rank)  # one sampling stream per rank
    params = list(model.parameters())  # below float32, AdamW updates float32 master copies (policy_update)
    weights = params if torch_dtype == torch.float32 else [p.detach().float().requires_grad_() for p in params]
    optimizer = torch.optim.AdamW(weights, lr=lr, betas=(beta1, beta2), eps=1e-8, weight_decay=weight_decay)
    warmup = max(1, round(warmup_frac * rl_steps))
    schedule = lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / rl_steps)))
    start, skipped_updates = 0, 0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        with torch.no_grad():
            for m, saved in zip(weights, state["master"] or []):
                m.copy_(saved)
        generator.set_state(state["generators"][rank])
        random.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"])
        start, skipped_updates = state["step"], state["skipped_updates"]
        if master:
            print(f"resumed from {ckpt} at step {start}")
    metrics_path, kept = os.path.join(out_dir, "metrics.jsonl"), []
    if state and os.path.isfile(metrics_path):  # keep the log up to the checkpoint, drop what came after it
        with open(metrics_path) as f:
            for line in f:
                with contextlib.suppress(ValueError):  # a line cut by the kill
                    if json.loads(line)["step"] < start:
                        kept.append(line)
    if master:
        with open(metrics_path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(metrics_path + ".tmp", metrics_path)
        metrics_file = open(metrics_path, "a")
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
        groups, stage = rollout_with_hints(model, tok, problems, step, stop_ids, generator)
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
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            eta = dt * (rl_steps - step - 1)
            hinted = " ".join(f"{v:.2f}" for v in record["hinted"].values())
            print(f"step {step:4d} | reward {record['reward']:.3f} | acc {record['accuracy']:.3f} | hinted {hinted} | "
                  f"len {record['response_len']:.1f} | gnorm {grad_norm:.3f} | {record['tokens_per_s']:.0f} tok/s | "
                  f"eta {eta:.0f}s", flush=True)
        if eval_interval and (step + 1) % eval_interval == 0 and step + 1 < rl_steps:
            mid = evaluate(model, tok, eval_sets, stop_ids)
            if master:
                print("eval", " ".join(f"{k} {v:.3f}" for k, v in mid.items()))
                metrics_file.write(json.dumps({"step": step, "eval": mid}) + "\n")
                metrics_file.flush()
        if ckpt_interval and (step + 1) % ckpt_interval == 0:
            save_checkpoint(model, optimizer, generator, step + 1, ckpt_state(), base_folder)

    save_checkpoint(model, optimizer, generator, rl_steps, ckpt_state(), base_folder)  # --resume then only evaluates
    summary["eval_after"] = evaluate(model, tok, eval_sets, stop_ids)
    print_table("eval (no hints)", {"before": summary["eval_before"], "after": summary["eval_after"]}, columns)
    summary["skipped_updates"] = skipped_updates
    summary["wall_seconds"] = time.time() - t_start
    if master:
        model.save_pretrained(os.path.join(out_dir, "model"))
        shutil.copy2(os.path.join(base_folder, "tokenizer.json"), os.path.join(out_dir, "model"))
        write_json(os.path.join(out_dir, "summary.json"), summary)
        metrics_file.close()
        print(f"done in {summary['wall_seconds']:.0f}s -> {out_dir}/summary.json")
    if dist.is_initialized():
        dist.destroy_process_group()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
