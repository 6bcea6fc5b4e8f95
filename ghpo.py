"""
GHPO (Guided Hybrid Policy Optimization, Liu et al., arXiv 2507.10628) in one file.

One RL step (../shared/GHPO_SPEC.md, "One training step"), as coded in rl_step() below:
  1. take the next B problems and sample G completions each (rollout.py)
  2. score every completion with verify.py: accuracy reward in {0, 1}
  3. from step `start_hint_step` on, for w in hint_ratios (0.25, 0.5, 0.75): every group whose G answers are all wrong
     is sampled again, whole, from  problem + HINT + solution[:round(len(solution) * w)]  (same step)
  4. group-normalised advantages  A = (r - mean_group(r)) / (std_group(r) + 1e-4)
  5. clipped policy-gradient loss over completion tokens only (kernels/loss.py), ppo_epochs updates with AdamW,
     cosine learning rate with warm-up and grad-norm clipping
At evaluation there are no hints. `method` switches to the paper's baselines: grpo, grpo_cl, grpo_cl_hint, dapo.

    python ghpo.py --config small.py                          # CPU demo: base model by SFT, then GHPO
    python ghpo.py --config small.py --method=grpo --seed=3 --out_dir=out/x
"""
import ast
import difflib
import hashlib
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

# -----------------------------------------------------------------------------
# configuration: every name below can be set in a config file (plain assignments) or with --key=value
# run
out_dir = "out/ghpo"          # metrics.jsonl, summary.json and checkpoints go here
seed = 0                      # RL seed (problem order, sampling); the base model has its own base_seed
method = "ghpo"               # ghpo | grpo | grpo_cl (curriculum) | grpo_cl_hint (curriculum + fixed hint) | dapo
device = "cpu"                # cpu | cuda
dtype = "float32"             # float32 | bfloat16 (parameters and activations)
threads = 0                   # torch CPU threads (0: torch's default)
kernel_impl = "auto"          # kernels/: auto | torch | triton | reference (the plain formula, to check a result)
# task and data
task = "arith"                # arith: the built-in CPU demo task (data/arith.py); math: jsonl files in MATH format
train_file = ""               # task=math: training jsonl (MATH format: problem, solution, answer, level)
train_levels = (1, 2, 3, 4, 5, 6)  # levels the RL prompts are drawn from
eval_levels = (1, 2, 3, 4, 5, 6)   # held-out evaluation levels (arith)
easy_levels = (1, 2, 3)       # the "easy" split; arith: also the levels the base model is trained on
hard_levels = (4, 5)          # the "hard" split: the levels just beyond the base model's training range
eval_per_level = 300          # held-out problems per evaluation level (arith)
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
probe_per_level = 100         # problems per level for the hint and step probes printed before RL (0: skip)
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
# prompts and hints


def hint_text(problem, ratio):
    """The hint of GHPO_SPEC.md: the template, then the first round(len * ratio) characters of the reference
    solution. No hint for ratio 0."""
    if ratio <= 0:
        return ""
    solution = problem["solution"]
    return hint_template + solution[:round(len(solution) * ratio)]


def prompt_text(problem, ratio=0.0):
    """The prompt the model sees: the problem (plus the hint, appended to the user message as the released code
    does), in the chat format for real models or as plain text for the demo model."""
    from model import chat_prompt
    user = problem["problem"] + hint_text(problem, ratio)
    if chat_template:
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
                   [{"role": "user", "content": user}]
        return chat_prompt(messages)
    return user + "\n"

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


def problem_order(train):
    """The order RL visits problems: shuffled (seeded), or easy to hard for the curriculum baselines."""
    order = train[:]
    random.Random(seed).shuffle(order)
    if method in ("grpo_cl", "grpo_cl_hint"):
        order.sort(key=lambda p: p["level"] or 0)  # stable: still shuffled within a level
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
    n_tokens = sum(len(seq) - n for seq, n, _ in rows)
    denom = n_tokens if loss_norm == "token" else len(rows)  # global normaliser across micro-batches
    stats = []
    for epoch in range(ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        for j, i in enumerate(range(0, len(rows), micro_batch)):
            ids, targets, mask = batch_tensors(rows[i:i + micro_batch], dev)
            h = model(ids[:, :-1], return_hidden=True)  # (b, L-1, C)
            loss, st = policy_loss(h, model.lm_head.weight, targets, mask, advantages[i:i + micro_batch],
                                   old_logp=None if old is None else old[j], ref_logp=None if ref is None else ref[j],
                                   eps_low=eps_low, eps_high=eps_high, beta=kl_coef, temperature=temperature,
                                   norm=loss_norm, denom=denom, impl=kernel_impl)
            loss.backward()
            stats.append({k: float(v) for k, v in st.items()} | {"loss": loss.item()})
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)  # pre-clip norm
        if not torch.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)  # skip a non-finite update, counted by the caller
            return float(grad_norm), stats, False
        optimizer.step()
    return float(grad_norm), stats, True

# -----------------------------------------------------------------------------
# evaluation and diagnostics


@torch.no_grad()
def greedy_completions(model, tok, prompts, stop_ids, n_new=None, batch=256):
    from rollout import sample_groups
    texts = []
    for i in range(0, len(prompts), batch):
        out = sample_groups(model, prompts[i:i + batch], 1, n_new or max_new_tokens, temperature=0.0,
                            stop_ids=stop_ids)
        texts += [tok.decode(t[m].tolist(), skip_special_tokens=True) for t, m in zip(out["tokens"], out["mask"])]
    return texts


def evaluate(model, tok, eval_sets, stop_ids, ratio=0.0):
    """Greedy accuracy per split without hints (ratio 0), plus the `easy` and `hard` aggregates."""
    from verify import verify
    model.eval()
    acc = {}
    for name, problems in eval_sets.items():
        texts = greedy_completions(model, tok, [tok.encode(prompt_text(p, ratio)).ids for p in problems], stop_ids)
        acc[name] = sum(verify(t, p["answer"]) for t, p in zip(texts, problems)) / max(len(problems), 1)
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
    """rows: {row name: {column: value}}; prints a fixed-width table."""
    print(title)
    print(f"{'':>10}" + "".join(f"{c:>8}" for c in columns))
    for name, vals in rows.items():
        print(f"{name:>10}" + "".join(f"{vals[c]:>8.3f}" if c in vals else f"{'-':>8}" for c in columns))

# -----------------------------------------------------------------------------
# data and the base model


def load_task():
    """Training problems and held-out evaluation sets {split name: problems}."""
    if task == "arith":
        from data.arith import make_splits
        train, _ = make_splits(train_levels, eval_per_level)  # held-out problems never enter training
        _, evals = make_splits(eval_levels, eval_per_level)
        return train, {f"L{lv}": [p for p in evals if p["level"] == lv] for lv in eval_levels}
    if task == "math":
        from data.datasets import load_jsonl
        train, skipped = load_jsonl(train_file, "math", levels=set(train_levels))
        print(f"{train_file}: {len(train)} problems, {skipped} skipped (empty or unparseable gold answer)")
        return train, {}
    raise ValueError(f"task must be 'arith' or 'math', got {task!r}")


def base_settings():
    keys = ("task", "n_layer", "n_embd", "n_head", "n_kv_head", "n_inner", "base_seed", "base_steps", "base_batch",
            "base_row_len", "base_lr", "base_hint_frac", "easy_levels", "eval_per_level", "hint_ratios", "hint_template",
            "chat_template", "system_prompt")
    with open(os.path.join(ROOT, "data", "arith.py"), "rb") as f:  # a change to the task or tokenizer retrains
        task_code = hashlib.sha1(f.read()).hexdigest()
    return {k: globals()[k] for k in keys} | {"task_code": task_code}


def train_base(folder):
    """Supervised learning of a tiny Qwen2 on worked solutions of the easy levels only (data/arith.py), several
    examples packed per row; a fraction of the prompts carry a hint so the base knows the hint format. Saves model
    and tokenizer.json to `folder` (atomically)."""
    from data.arith import make_splits, build_tokenizer, save_tokenizer
    from model import Qwen2, Qwen2Config
    tok = build_tokenizer([hint_template])
    end, eot = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")
    train, _ = make_splits(easy_levels, eval_per_level)
    config = Qwen2Config(vocab_size=tok.get_vocab_size(), hidden_size=n_embd, intermediate_size=n_inner,
                         num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_kv_head,
                         max_position_embeddings=1024, rope_theta=10000.0, tie_word_embeddings=True,
                         eos_token_id=end)
    model = Qwen2.from_config(config, seed=base_seed)
    rng = random.Random(base_seed)

    def packed_batch():
        x = torch.full((base_batch, base_row_len + 1), eot)
        m = torch.zeros(base_batch, base_row_len + 1)
        for b in range(base_batch):
            t = 0
            while True:
                p = rng.choice(train)
                ratio = rng.choice(hint_ratios) if rng.random() < base_hint_frac else 0.0
                a, c = tok.encode(prompt_text(p, ratio)).ids, tok.encode(p["solution"]).ids + [end, eot]
                if t + len(a) + len(c) > base_row_len + 1:
                    break
                x[b, t:t + len(a) + len(c)] = torch.tensor(a + c)
                m[b, t + len(a):t + len(a) + len(c) - 1] = 1.0  # learn the solution and its end, not the problem
                t += len(a) + len(c)
        return x[:, :-1], x[:, 1:], m[:, 1:]

    opt = torch.optim.AdamW(model.parameters(), lr=base_lr, betas=(0.9, 0.95), weight_decay=0.0)
    t0 = time.time()
    for it in range(base_steps):
        x, y, m = packed_batch()
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
# the loop


def main(argv):
    configure(argv, globals())
    from model import Qwen2, load_tokenizer, stop_token_ids
    if threads:
        torch.set_num_threads(threads)
    t_start = time.time()
    os.makedirs(out_dir, exist_ok=True)
    dev = torch.device(device)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    train, eval_sets = load_task()
    base_folder = load_base()
    model = Qwen2.from_pretrained(base_folder, dtype=torch_dtype, device=dev)
    tok = load_tokenizer(base_folder)
    stop_ids = stop_token_ids(tok)
    ref_model = Qwen2.from_pretrained(base_folder, dtype=torch_dtype, device=dev).eval() if kl_coef > 0 else None
    summary = {"method": method, "seed": seed, "config": {k: globals()[k] for k in config_keys}}

    # before RL: the base model's accuracy, and the two diagnostics
    columns = list(eval_sets) + ["easy", "hard"]
    summary["eval_before"] = evaluate(model, tok, eval_sets, stop_ids)
    print_table("eval before RL (greedy, no hints)", {"base": summary["eval_before"]}, columns)
    if probe_per_level and task == "arith":
        summary["hint_probe"] = hint_probe(model, tok, eval_sets, stop_ids)
        print_table("hint probe: base accuracy with a hint of each ratio", summary["hint_probe"], columns)
        summary["step_probe"] = step_probe(model, tok, eval_sets, stop_ids)
        steps = sorted({k for v in summary["step_probe"].values() for k in v}, key=int)
        print_table("step probe: accuracy of step k given the correct steps before it", summary["step_probe"], steps)

    order = problem_order(train)
    generator = torch.Generator(device=dev).manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(beta1, beta2), eps=1e-8, weight_decay=weight_decay)
    warmup = max(1, round(warmup_frac * rl_steps))
    schedule = lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / rl_steps)))
    metrics_file = open(os.path.join(out_dir, "metrics.jsonl"), "w")
    skipped_updates = 0

    for step in range(rl_steps):
        t0 = time.time()
        model.eval()
        problems = [order[(step * prompts_per_step + i) % len(order)] for i in range(prompts_per_step)]
        groups, stage = rollout_with_hints(model, tok, problems, step, stop_ids, generator)
        acc = torch.stack([g["acc"] for g in groups])  # (P, G)
        rewards = acc + format_reward * torch.stack([g["fmt"] for g in groups])  # (P, G)
        adv = group_advantages(rewards)  # (P, G)
        keep = trained_groups(acc)
        rows = pack_rows([groups[i] for i in keep])
        row_adv = adv[keep].flatten().to(dev) if keep else None  # (rows,)
        model.train()
        grad_norm, stats, updated = (policy_update(model, optimizer, rows, row_adv, ref_model, dev)
                                     if rows else (0.0, [], False))
        skipped_updates += not updated and bool(rows)
        for group in optimizer.param_groups:
            group["lr"] = lr * schedule(step + 1)

        n_tokens = sum(int(g["mask"].sum()) for g in groups)
        dt = time.time() - t0
        record = {
            "step": step, "reward": rewards.mean().item(), "accuracy": acc.mean().item(),
            "hinted": {str(w): sum(s == k for s in stage) / len(stage) for k, w in enumerate(hint_ratios, 1)},
            "all_wrong": (acc.sum(1) == 0).float().mean().item(),  # groups with no signal after hints
            "response_len": n_tokens / acc.numel(), "grad_norm": grad_norm,
            "tokens_per_s": n_tokens / dt, "step_s": dt, "lr": optimizer.param_groups[0]["lr"],
            "skipped_updates": skipped_updates,
        } | ({k: sum(s[k] for s in stats) / len(stats) for k in stats[0]} if stats else {})
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        eta = dt * (rl_steps - step - 1)
        hinted = " ".join(f"{v:.2f}" for v in record["hinted"].values())
        print(f"step {step:4d} | reward {record['reward']:.3f} | acc {record['accuracy']:.3f} | hinted {hinted} | "
              f"len {record['response_len']:.1f} | gnorm {grad_norm:.3f} | {record['tokens_per_s']:.0f} tok/s | "
              f"eta {eta:.0f}s", flush=True)
        if eval_interval and (step + 1) % eval_interval == 0 and step + 1 < rl_steps:
            mid = evaluate(model, tok, eval_sets, stop_ids)
            print("eval", " ".join(f"{k} {v:.3f}" for k, v in mid.items()))
            metrics_file.write(json.dumps({"step": step, "eval": mid}) + "\n")

    summary["eval_after"] = evaluate(model, tok, eval_sets, stop_ids)
    print_table("eval (greedy, no hints)", {"before": summary["eval_before"], "after": summary["eval_after"]},
                columns)
    summary["skipped_updates"] = skipped_updates
    summary["wall_seconds"] = time.time() - t_start
    model.save_pretrained(os.path.join(out_dir, "model"))
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"done in {summary['wall_seconds']:.0f}s -> {out_dir}/summary.json")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
