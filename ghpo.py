"""
GHPO (Guided Hybrid Policy Optimization, Liu et al., arXiv 2507.10628) in one file. docs/method.md is the method as
this project implements it, its baselines and relatives; the numbers below are its steps. One RL step (train_step):
1. sample G completions for each of B problems (rollout.py); 2. score them (verify.py); 3. sample every all-wrong group
again with a hint, the first part w of its reference solution, for w in hint_ratios; 4. group-normalised advantages;
5. the clipped policy-gradient update (kernels/loss.py).
    python ghpo.py --config small.py                             # CPU demo: GHPO from the shipped base model
    python ghpo.py --config qwen2.5-math-1.5b.py                 # a real checkpoint on MATH levels 3-5 (one GPU)
    torchrun --nproc_per_node=8 ghpo.py --config qwen2.5-7b.py   # fsdp=True: weights and AdamW state sharded
"""
import importlib.util
import math
import os
import random
import re
import sys
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch

import checkpoint
import configurator
import prompts
import rollout
from configurator import UsageError
from data.arith import arith_task
from data.datasets import math_task
from data.demo_base import check_record
from distributed import all_gather, all_sum, even_rows, exit_process, full_state, rank_world, setup, shard, \
    sync_grads
from evaluate import EvalSettings, evaluate, print_table, table_columns, table_title
from kernels.logprob import fused_logprobs
from kernels.loss import policy_loss
from logbook import Generated, StepOutcome, hint_column, log_line, open_wandb, print_step, step_record
from model import Qwen2, stop_token_ids
from relatives import hint_length, hint_likelihood, hint_scale, replay_groups, truncated
from verify import format_ok, grade

# -----------------------------------------------------------------------------
# configuration: every name below can be set in a config file (plain assignments) or with --key=value
# run
out_dir = "out/ghpo"          # metrics.jsonl, summary.json, model/ and checkpoints go here (one run per folder)
seed = 0                      # RL seed (problem order, sampling); the base model was made with its own seed
method = "ghpo"               # ghpo | grpo | grpo_cl | grpo_cl_hint | resample | dapo | dapo_drop (docs/method.md)
device = "cpu"                # cpu | cuda
dtype = "float32"             # float32 | bfloat16 (weights and activations; AdamW then updates float32 master copies)
resume = False                # continue from the newest intact checkpoint in out_dir (an error if there is none)
overwrite = False             # a fresh run into an out_dir holding another run's files removes them first (else: error)
threads = 0                   # torch CPU threads (0: torch's default)
fsdp = False                  # under torchrun: shard weights, gradients and AdamW state over the ranks (FSDP2)
debug = False                 # a bad setting or file shows its traceback, not one line (or set GHPO_DEBUG=1)
kernel_impl = "auto"          # kernels/: auto | torch | triton | reference (the plain formula, to check a result)
# task and data
task = "arith"                # arith: the CPU demo's task (data/arith.py); math: jsonl files in MATH format
train_file = ""               # task=math: training jsonl (MATH format: problem, solution, answer, level)
train_levels = (1, 2, 3, 7, 8, 9)  # levels the RL prompts are drawn from
eval_levels = (1, 2, 3, 7, 8, 9)   # held-out evaluation levels (arith)
easy_levels = (1, 2, 3)       # the "easy" split (arith: the levels the demo base learned solved)
hard_levels = (7, 8, 9)       # the "hard" split (arith: the levels the demo base half-knows)
eval_per_level = 100          # held-out problems per evaluation level (arith; the base never trained on them)
benchmarks = ("aime24", "math500", "olympiadbench", "amc23", "minerva", "gpqa_diamond", "gsm8k")  # task=math
                              # evaluation (data/): the paper's six benchmarks, then GSM8K as an extra
gpqa_file = "data/gpqa_diamond.csv"  # GPQA-Diamond's CSV (not shipped: docs/real.md); skipped if this default is absent
bench_limit = 0               # rows per benchmark (0: all), for quick runs
aime_samples = 32             # aime24 accuracy: the mean over this many samples per problem (others: greedy)
eval_temperature = 0.6        # temperature of those samples (top_p 0.95); the paper does not state its own
eval_only = False             # evaluate init_from (or the resumed checkpoint) without hints, print the table, exit
chat_template = False         # wrap prompts in the Qwen chat format (real models); the tiny demo model uses plain text
system_prompt = ""            # system message when chat_template is on
# model
init_from = "data/small_base"  # a Hugging Face folder: config.json, *.safetensors, tokenizer.json (the demo's base)
# sampling
group_size = 8                # G completions per prompt
max_new_tokens = 120          # completion budget
temperature = 1.0             # sampling temperature (the loss uses the same temperature)
top_k = 50                    # TRL's default
top_p = 1.0                   # nucleus sampling: the smallest set of tokens with this much probability (1.0: off)
sample_rows = 0               # rows a sampling batch decodes at once; 0: the memory plan's on CUDA, on a CPU all (256)
# GHPO
hint_ratios = (0.25, 0.5, 0.75)  # hint stages, escalated inside one step while a group is still all wrong
hint_template = prompts.HINT_TEMPLATE  # the words between the problem and a hint in the user message (released code's)
hint_in_answer = True         # True: the hint opens the answer and the model continues it; False: in the user message
start_hint_step = 0           # cold start: plain GRPO before this step (released code: 0, paper: 20)
fixed_hint_ratio = 0.5        # grpo_cl_hint: the hint every problem gets
format_reward = 0.0           # weight of the format reward; the paper uses 0.5 (with accuracy 1.0)
format_pattern = r".*\\boxed\{"  # format reward 1 when re.match(this, completion, DOTALL | MULTILINE) succeeds
# GHPO's relatives and rivals (docs/method.md, "Relatives and rivals"), each off by default
hint_schedule = (1.0,)        # hint ratios times hint_schedule[k] in the k-th equal part of the run (QuestA: 1.0, 0.5)
hint_loss_coef = 0.0          # weight of the hint tokens' mean negative log-likelihood (UFT); needs hint_in_answer
replay_size = 0               # groups with a signal kept to stand in for groups without one (TRL's replay buffer: 64)
mask_truncated = False        # completions cut at max_new_tokens get no loss (DAPO's overlong filtering)
dapo_max_rounds = 4           # dapo: at most this many sampling rounds a step (verl's max_num_gen_batches; GHPO's 4)
# optimisation
rl_steps = 60                 # RL steps
prompts_per_step = 16         # B problems per step
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
loss_norm = "token"           # token (released code) | sequence (paper Eq. 1) | dr_grpo (TRL's): docs/method.md
eval_interval = 0             # evaluate every this many RL steps as well (0: only before and after)
ckpt_interval = 0             # write a checkpoint every this many RL steps (0: only at the end)
wandb_log = False             # also send metrics.jsonl's lines to Weights & Biases (imported only when on)
wandb_project = "ghpo"        # its project
wandb_run_name = ""           # its run name ("": the last folder of out_dir)
config_keys = [k for k, v in globals().items() if k.islower() and not k.startswith("_")
               and isinstance(v, (int, float, bool, str, tuple))]
# -----------------------------------------------------------------------------


METHODS = ("ghpo", "grpo", "grpo_cl", "grpo_cl_hint", "dapo", "dapo_drop", "resample")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
ROOT = os.path.dirname(os.path.abspath(__file__))
GPQA_DEFAULT = "data/gpqa_diamond.csv"


def configure(argv, others=()):
    """Apply `--config FILE.py` and `--key=value` to these settings (and to the settings blocks of `others`, another
    command's globals); returns {key: value}."""
    cfg = configurator.configure(argv, [globals(), *others], ROOT)
    check_ranges(cfg)
    try:
        re.compile(cfg["format_pattern"])
    except re.error as e:
        raise UsageError(f"format_pattern: not a regular expression ({e}): {cfg['format_pattern']!r}") from None
    if cfg["hint_loss_coef"] and not cfg["hint_in_answer"]:
        raise UsageError("hint_loss_coef > 0 trains on the hint as the model's own text: it needs hint_in_answer=True")
    if cfg["task"] == "arith" and cfg["train_file"]:
        raise UsageError(f"train_file={cfg['train_file']!r}: the demo task (task=arith) makes its own problems; "
                         f"train_file is read under task=math")
    if cfg["wandb_log"] and "wandb" not in sys.modules and importlib.util.find_spec("wandb") is None:
        raise UsageError("wandb_log=True needs the wandb package (pip install wandb), which is not installed here")
    gpqa = cfg["gpqa_file"]  # the default may be absent (GPQA is then skipped); a path the user chose must exist
    if gpqa != GPQA_DEFAULT and not (os.path.isfile(gpqa) or os.path.isfile(os.path.join(ROOT, gpqa))):
        raise UsageError(f"gpqa_file: {gpqa!r} not found (looked in . and {ROOT})")
    return cfg


def check_ranges(c):
    """Every setting's choices or range: one line naming the setting, before anything loads or is written."""
    number, ratios, schedule = lambda x: isinstance(x, (int, float)), c["hint_ratios"], c["hint_schedule"]
    for key, ok, what in (
            *((k, c[k] in known, "one of " + ", ".join(known)) for k, known in (
                ("method", METHODS), ("loss_norm", ("token", "sequence", "dr_grpo")), ("task", ("arith", "math")),
                ("dtype", tuple(DTYPES)), ("device", ("cpu", "cuda")),
                ("kernel_impl", ("auto", "torch", "triton", "reference")))),
            ("group_size", c["group_size"] >= 2, ">= 2: a group's advantages compare its samples with each other"),
            *((k, c[k] >= 1, ">= 1") for k in ("prompts_per_step", "max_new_tokens", "micro_batch", "ppo_epochs",
                                               "eval_per_level", "aime_samples", "dapo_max_rounds")),
            *((k, c[k] >= 0, ">= 0") for k in ("rl_steps", "bench_limit", "sample_rows", "threads", "top_k",
                                               "start_hint_step", "eval_interval", "ckpt_interval", "lr",
                                               "weight_decay", "kl_coef", "eps_high", "format_reward",
                                               "hint_loss_coef", "replay_size")),
            ("temperature", c["temperature"] > 0, "> 0: the loss divides the logits by it (greedy sampling is "
                                                  "temperature 0, which RL's log-probs cannot use)"),
            ("eval_temperature", c["eval_temperature"] > 0, "> 0 (aime24's samples; every other answer is greedy)"),
            ("top_p", 0 < c["top_p"] <= 1, "in (0, 1]"), ("grad_clip", c["grad_clip"] > 0, "> 0"),
            *((k, 0 <= c[k] < 1, "in [0, 1)") for k in ("eps_low", "beta1", "beta2", "fixed_hint_ratio")),
            ("warmup_frac", 0 <= c["warmup_frac"] <= 1, "in [0, 1]"),
            ("hint_ratios", len(ratios) > 0 and all(number(w) and 0 < w < 1 for w in ratios),
             "one or more ratios in (0, 1) (1 is the whole solution)"),
            ("hint_schedule", len(schedule) > 0 and all(number(x) and x >= 0 for x in schedule),
             "one or more numbers >= 0"),
            *((k, len(c[k]) > 0, "one or more levels") for k in ("train_levels", "eval_levels"))):
        if not ok:
            raise UsageError(f"{key} must be {what}, got {c[key]!r}")


def prompt_format():
    """This run's prompt settings, as prompts.py takes them."""
    return prompts.PromptFormat(hint_in_answer, hint_template, chat_template, system_prompt)


def prompt_ids(tok, problem, ratio=0.0):
    """The token ids of a problem's prompt with a hint of this ratio (prompts.py)."""
    return tok.encode(prompts.prompt_text(problem, ratio, prompt_format())).ids


def eval_settings():
    """This run's evaluation settings, as evaluate.py takes them."""
    return EvalSettings(prompt_format(), max_new_tokens, aime_samples, eval_temperature, seed, benchmarks, easy_levels,
                        hard_levels, lambda model, prompt_list, k, n_new: rollout.sampling_rows(
                            model, prompt_list, k, n_new, DTYPES[dtype], device == "cuda", sample_rows, cpu_rows=256))

# -----------------------------------------------------------------------------
# steps 1-3: sampling, scoring and the GHPO hint escalation


def sample_and_score(model, tok, problems, ratios, stop_ids, generator):
    """Sample G completions for each problem's prompt at its hint ratio and verify them. Returns one group dict per
    problem: prompt ids, completion tokens (G, T) and mask, accuracy (G,), format (G,), ratio and texts."""
    G = group_size
    prompt_list = [prompt_ids(tok, p, r) for p, r in zip(problems, ratios)]
    out = rollout.sample_groups(model, prompt_list, G, max_new_tokens, temperature=temperature, top_k=top_k,
                                top_p=top_p, stop_ids=stop_ids, generator=generator,
                                max_rows=rollout.sampling_rows(model, prompt_list, G, max_new_tokens, DTYPES[dtype],
                                                               device == "cuda", sample_rows))
    groups = []
    for i, (p, r) in enumerate(zip(problems, ratios)):
        rows = slice(i * G, (i + 1) * G)
        tokens, mask = out["tokens"][rows], out["mask"][rows]  # (G, T)
        texts = [tok.decode(t[m].tolist(), skip_special_tokens=True) for t, m in zip(tokens, mask)]
        groups.append(dict(problem=p, ratio=r, prompt=prompt_list[i], tokens=tokens, mask=mask,
                           acc=torch.tensor([float(grade(t, p)) for t in texts]),
                           fmt=torch.tensor([float(format_ok(t, format_pattern)) for t in texts]), texts=texts))
    return groups


def spent(groups, tok):
    """What sampling these groups cost (Generated)."""
    hint = lambda g: len(g["prompt"]) - len(prompt_ids(tok, g["problem"])) if g["ratio"] else 0
    return Generated(sum(len(g["tokens"]) for g in groups), sum(int(g["mask"].sum()) for g in groups),
                     sum(len(g["prompt"]) for g in groups), sum(hint(g) for g in groups))


def rollout_with_hints(model, tok, problems, step, stop_ids, generator):
    """Steps 1-3. Returns the final groups, per group the hint stage it ended at (0: no hint, s: hint_ratios[s-1]), and
    what was sampled in all (Generated). Each method is one branch: grpo_cl_hint hints every problem from the start,
    ghpo escalates all-wrong groups, resample samples them again at the same stages without a hint (the ablation of
    the hint: the same extra sampling)."""
    scale = hint_scale(step, hint_schedule, rl_steps)
    ratios = [fixed_hint_ratio * scale if method == "grpo_cl_hint" else 0.0] * len(problems)
    groups = sample_and_score(model, tok, problems, ratios, stop_ids, generator)
    stage, sampled = [0] * len(problems), list(groups)
    if method in ("ghpo", "resample") and step >= start_hint_step:
        for s, w in enumerate(hint_ratios, 1):
            hard = [i for i, g in enumerate(groups) if g["acc"].sum() == 0]  # detection: accuracy reward only
            if not hard:
                break
            # the whole group is regenerated from the hinted prompt: hinted and unhinted samples never mix
            ratio = w * scale if method == "ghpo" else 0.0
            regen = sample_and_score(model, tok, [problems[i] for i in hard], [ratio] * len(hard), stop_ids,
                                     generator)
            for i, g in zip(hard, regen):
                groups[i], stage[i] = g, s
            sampled += regen
    return groups, stage, spent(sampled, tok)


def refill(model, tok, groups, stop_ids, generator, more):
    """DAPO's dynamic sampling (Yu et al., arXiv 2503.14476; verl's max_num_gen_batches): while fewer of the groups
    sampled have a signal (accuracy rewards that differ) than the step's share has problems, and fewer than
    dapo_max_rounds rounds have run, sample the groups of more(r), round r's new problems (no hint). Returns the groups
    of the rounds after the first and what they cost (Generated)."""
    extra = []
    for r in range(1, dapo_max_rounds):
        if len(trained_groups(torch.stack([g["acc"] for g in groups + extra]))) >= len(groups):
            break
        problems = more(r)
        extra += sample_and_score(model, tok, problems, [0.0] * len(problems), stop_ids, generator)
    return extra, spent(extra, tok)


def refill_batch(order, step, r):
    """The r-th (r >= 1) refill batch of a step for dapo: prompts_per_step problems of the problem order past the
    rl_steps batches the run visits, at a place of its own for each (step, round), so a resumed run draws the same."""
    at = (rl_steps + step * (dapo_max_rounds - 1) + r - 1) * prompts_per_step
    return [order[(at + i) % len(order)] for i in range(prompts_per_step)]


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
    """Indices of the groups that enter the loss: all of them, or for dapo and dapo_drop (dynamic sampling) only groups
    with a learning signal, dropping all-wrong and all-right groups instead of hinting them. acc: (P, G)."""
    if method in ("dapo", "dapo_drop"):
        return [i for i in range(len(acc)) if 0 < acc[i].sum() < acc.shape[1]]
    return list(range(len(acc)))


def group_rewards(groups):
    """(P, G) rewards of the groups: accuracy + format_reward x format."""
    return torch.stack([g["acc"] for g in groups]) + format_reward * torch.stack([g["fmt"] for g in groups])

# -----------------------------------------------------------------------------
# steps 4-5: advantages and the policy update


def group_advantages(rewards, eps=1e-4):
    """A_i = (r_i - mean(r)) / (std(r) + eps) within each group (rows of rewards (P, G)); unbiased std as TRL."""
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + eps)  # (P, G)


class Row(NamedTuple):
    """One completion as the update reads it."""
    ids: list                 # prompt + completion token ids
    n_prompt: int             # its first n_prompt ids are the prompt (hint included): never in the policy loss
    n_hint: int = 0           # the prompt's last n_hint ids are a hint the likelihood term trains (hint_loss_coef)


def pack_rows(groups, tok=None):
    """One Row per completion of the groups, in order (with hint_loss_coef, and tok, each marks its hint tokens)."""
    rows = []
    for g in groups:
        n_hint = hint_length(g["prompt"], prompt_ids(tok, g["problem"])) if hint_loss_coef and g["ratio"] else 0
        rows += [Row(g["prompt"] + tokens[:int(mask.sum())].tolist(), len(g["prompt"]), n_hint)
                 for tokens, mask in zip(g["tokens"], g["mask"])]
    return rows


def batch_tensors(rows, dev):
    """Right-padded (B, L) ids, targets (B, L-1) and loss mask (B, L-1) of completion positions."""
    L = max(len(row.ids) for row in rows)
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    mask = torch.zeros(len(rows), L - 1)
    for b, row in enumerate(rows):
        ids[b, :len(row.ids)] = torch.tensor(row.ids)
        mask[b, row.n_prompt - 1:len(row.ids) - 1] = 1.0  # position t predicts token t+1: completion tokens only
    return ids.to(dev), ids[:, 1:].to(dev), mask.to(dev)


@torch.no_grad()
def sequence_logprobs(model, rows, dev):
    """Per-token log-probs (B, L-1) of each row's own tokens under `model`, on the prompt actually used (hinted or
    not), at the sampling temperature: the old and reference log-probs of the objective."""
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


@dataclass
class Policy:
    """The model RL trains and what its update needs."""
    model: Qwen2                        # under FSDP2: float32 shards that compute in dtype
    optimizer: torch.optim.Optimizer    # AdamW over the float32 weights: master if there are some, else model's own
    master: list | None = None          # float32 master weights of a model below float32 (make_policy), else None
    ref: Qwen2 | None = None            # the frozen reference model of the KL term (kl_coef > 0)


def learning_rate(step):
    """The cosine schedule: linear warm-up over warmup_frac of the steps, then cosine decay from lr to 0."""
    warmup = max(1, round(warmup_frac * rl_steps))
    return lr * (min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / rl_steps))))


def make_policy(model, ref=None):
    """AdamW over the model's float32 weights. Parameters below float32 (a bfloat16 run without FSDP2) get float32
    master copies, which AdamW updates and policy_update copies back rounded: a bfloat16 weight alone would round an
    lr-1e-6 step away. Their gradients accumulate in float32 too: each backward's goes into the master's and is freed
    (accumulate_fp32), so micro-batches are summed in float32. FSDP2's shards are float32 already: they are the master
    weights."""
    params = list(model.parameters())
    master = None if params[0].dtype == torch.float32 else [p.detach().float().requires_grad_() for p in params]
    for h in getattr(model, "master_hooks", ()):  # a model's latest policy is the one its backward feeds
        h.remove()
    model.master_hooks = [p.register_post_accumulate_grad_hook(lambda p, m=m: accumulate_fp32(p, m))
                          for m, p in zip(master or (), params)]  # each backward's bfloat16 gradient, into float32
    optimizer = torch.optim.AdamW(master or params, lr=lr, betas=(beta1, beta2), eps=1e-8, weight_decay=weight_decay)
    return Policy(model, optimizer, master, ref)


def policy_update(policy, rows, advantages, dev):
    """ppo_epochs passes of the clipped objective over the rows, one optimiser step per pass. Returns the pre-clip
    gradient norm, per micro-batch loss statistics and whether the model was updated (False: a non-finite loss or
    gradient, the update skipped). Per token (docs/method.md, "The objective"; paper Eq. 1 for the sequence mean):
    l = -min(p A, clip(p, 1-eps_low, 1+eps_high) A) + beta KL_k3,  p = exp(logp - logp_old)."""
    model, optimizer, master = policy.model, policy.optimizer, policy.master
    if fsdp:
        rows, advantages = even_rows(rows, advantages, Row([0, 0], 2))  # a row without a loss token
    # old log-probs are only needed when the policy moves between updates of one batch (mu > 1); with one update
    # the ratio is exactly 1, as in the released code, and the kernel uses the detached new log-probs
    old = sequence_logprobs(model, rows, dev) if ppo_epochs > 1 else None
    ref = sequence_logprobs(policy.ref, rows, dev) if kl_coef > 0 else None
    n_tokens, n_rows = all_sum(sum(len(r.ids) - r.n_prompt for r in rows), sum(len(r.ids) > r.n_prompt for r in rows))
    denom = {"token": n_tokens, "sequence": n_rows, "dr_grpo": n_rows * max_new_tokens}[loss_norm]  # global
    # normaliser across micro-batches and ranks (dr_grpo: rows x the completion budget, TRL's max_completion_length)
    n_hint = all_sum(sum(r.n_hint for r in rows))[0] if hint_loss_coef else 0  # the likelihood term's tokens
    stats = []
    for epoch in range(ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        for j, i in enumerate(range(0, len(rows), micro_batch)):
            ids, targets, mask = batch_tensors(rows[i:i + micro_batch], dev)
            try:
                h = model(ids[:, :-1], return_hidden=True)  # (b, L-1, C)
                loss, st = policy_loss(h, model.lm_head.weight, targets, mask, advantages[i:i + micro_batch],
                                       old_logp=None if old is None else old[j],
                                       ref_logp=None if ref is None else ref[j], eps_low=eps_low, eps_high=eps_high,
                                       beta=kl_coef, temperature=temperature, norm=loss_norm, denom=denom,
                                       impl=kernel_impl)
                hint_loss, hint_nll = hint_likelihood(h, model.lm_head.weight, rows[i:i + micro_batch], targets,
                                                      n_hint, hint_loss_coef, temperature, kernel_impl)
                (loss + hint_loss).backward()
            except torch.cuda.OutOfMemoryError:
                raise UsageError(f"out of memory in the update, a micro-batch of {ids.shape[0]} rows x "
                                 f"{ids.shape[1]} tokens: lower micro_batch (now {micro_batch})") from None
            if mask.any():  # even_rows' padding alone has no statistics
                stats.append({k: float(v) for k, v in st.items()} | {"loss": loss.item()}
                             | ({"hint_nll": hint_nll} if hint_loss_coef else {}))
        sync_grads(model, master)
        grad_norm = torch.nn.utils.clip_grad_norm_(master or list(model.parameters()), grad_clip)  # pre-clip norm
        if not torch.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)  # skip a non-finite update (loss or gradients), counted by the caller
            model.zero_grad(set_to_none=True)
            return float(grad_norm), stats, False
        optimizer.step()
        if master is not None:  # the model gets the new master weights, rounded to its dtype
            with torch.no_grad():
                for m, p in zip(master, model.parameters()):
                    p.copy_(m)
        optimizer.zero_grad(set_to_none=True)  # free the gradients before the next rollout needs the memory
        model.zero_grad(set_to_none=True)
    return float(grad_norm), stats, True


def accumulate_fp32(p, m):
    """Add a bfloat16 parameter's gradient of one micro-batch (its whole backward: a tied weight's two uses are summed
    by then) into its float32 master's and free it: the sum over micro-batches is in float32, and at most one
    parameter's bfloat16 gradient exists at a time."""
    m.grad = p.grad.float() if m.grad is None else m.grad.add_(p.grad)
    p.grad = None

# -----------------------------------------------------------------------------
# one step


def sampling_model(model):
    """The model that samples, evaluates and is saved: the trained model itself, or under FSDP2 a plain copy of its
    gathered weights in dtype, made for one rollout or evaluation and freed after it."""
    if not fsdp:
        return model
    return Qwen2.from_state_dict(model.config, full_state(model, DTYPES[dtype])).eval()


def train_step(policy, tok, problems, step, stop_ids, generator, dev, replay=None, more=None):
    """One step on this rank's problems: steps 1-3 (rollout_with_hints), 4 (group_advantages) and 5 (policy_update).
    replay: the replay buffer (replay_groups), kept by the caller from step to step. more: for dapo, round r's new
    problems (this rank's share of refill_batch); the step trains on the first len(problems) groups with a signal."""
    t0 = time.time()
    policy.model.eval()
    sampler = sampling_model(policy.model)
    groups, stage, generated = rollout_with_hints(sampler, tok, problems, step, stop_ids, generator)
    extra, refilled = refill(sampler, tok, groups, stop_ids, generator, more) if method == "dapo" and more \
        else ([], Generated(0, 0))
    del sampler  # under FSDP2 a gathered copy of the weights: freed before the update, as before
    t1 = time.time()
    acc = torch.stack([g["acc"] for g in groups])  # (P, G)
    rewards = group_rewards(groups)  # (P, G)
    trained, replayed = replay_groups(groups, rewards, group_advantages(rewards), replay, step, seed,
                                       replay_size) if replay_size else (groups, 0)
    trained = trained + extra  # dapo's refills: after the step's own groups
    adv = group_advantages(group_rewards(trained))  # (P, G)
    keep = trained_groups(torch.stack([g["acc"] for g in trained]))[:len(problems)]
    rows = pack_rows([trained[i] for i in keep], tok)
    row_adv = adv[keep].flatten().to(dev) if keep else None  # (rows,)
    if mask_truncated and keep:  # overlong filtering: a completion cut by the length limit gets no loss
        cut = torch.cat([truncated(trained[i], stop_ids) for i in keep]).to(dev)  # (rows,)
        rows, row_adv = [r for r, c in zip(rows, cut.tolist()) if not c], row_adv[~cut]
    policy.model.train()
    n_rows = all_sum(len(rows))[0]  # every rank takes part in the update when any rank has rows
    grad_norm, stats, updated = policy_update(policy, rows, row_adv, dev) if n_rows else (0.0, [], False)
    return StepOutcome(acc.tolist(), rewards.tolist(), stage, sum(int(g["mask"].sum()) for g in groups), stats,
                       grad_norm, bool(n_rows) and not updated, Generated(*map(sum, zip(generated, refilled))),
                       sum(int(truncated(g, stop_ids).sum()) for g in groups), replayed, len(keep),
                       ppo_epochs * sum(len(r.ids) for r in rows), t1 - t0, time.time() - t1)


# -----------------------------------------------------------------------------
# setup: the machine, data, memory and the starting model


def check_setup(world):
    """Errors a run can know before it loads anything, each one line."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device='cuda' but torch finds no CUDA GPU here; pass --device=cpu to run on the CPU")
    if not os.path.isfile(os.path.join(init_from, "config.json")):
        raise UsageError(f"init_from: no checkpoint folder (config.json, *.safetensors, tokenizer.json) at "
                         f"{init_from!r}")
    if prompts_per_step % world:
        raise UsageError(f"prompts_per_step={prompts_per_step} must be a multiple of the {world} processes")
    if fsdp and world == 1:
        raise UsageError("fsdp=True shards the model over torchrun's processes: use torchrun --nproc_per_node=N>1")


def check_memory(model, policy, tok, problems, eval_sets):
    """On CUDA, before the first evaluation: rollout.check_memory for the longest prompt this run can show (a training
    problem with its largest hint, or a benchmark's), its largest group and the update's micro-batch (policy None:
    evaluation only); it reserves the sampling engine for the run, or stops the run with one line."""
    if device != "cuda":
        return
    rank, world = rank_world()
    ratio = max((*hint_ratios, fixed_hint_ratio), default=0.0) if method in ("ghpo", "grpo_cl_hint") else 0.0
    train_len = max((len(prompt_ids(tok, p, ratio)) for p in problems), default=0)
    eval_len = max((len(prompt_ids(tok, p)) for ps in eval_sets.values() for p in ps[rank::world]), default=0)
    G = max(group_size if problems else 1, aime_samples if "aime24" in eval_sets else 1)
    return rollout.check_memory(model, policy and policy.optimizer, bool(policy and policy.master), DTYPES[dtype],
                                max(train_len, eval_len), max_new_tokens, G, micro_batch if problems else 0,
                                train_len, fsdp, prompts_per_step // world * group_size, rank)


def weights_dtype():
    """The dtype a run loads its weights in: dtype, or float32 shards under FSDP2 (their own master weights)."""
    return torch.float32 if fsdp else DTYPES[dtype]


def load_task():
    """Training problems and held-out evaluation sets {split name: problems}."""
    if task == "arith":  # the CPU demo's task (data/arith.py)
        try:
            return arith_task(train_levels, eval_levels, eval_per_level)
        except ValueError as e:  # a level without training problems left, or an unknown level
            raise UsageError(f"task=arith: {e}") from None
    return math_task(train_file, train_levels, benchmarks, bench_limit, eval_only, gpqa_file)  # data/datasets.py

# -----------------------------------------------------------------------------
# the run


def main(argv):
    """A whole run: settings and out_dir checked, the task and the starting model, the evaluation before RL, the
    steps (each logged, with checkpoints), the evaluation after, and the files it wrote."""
    if "--help" in argv or "-h" in argv:
        return print(configurator.help_text([sys.modules[__name__]], __doc__.strip()))
    cfg = configure(argv)
    if threads:
        torch.set_num_threads(threads)
    t_start = time.time()
    rank, world = setup(device)  # under torchrun: one process per GPU (or per CPU slice)
    check_setup(world)
    checkpoint.check_out_dir(out_dir, resume, overwrite, rank)  # one run per folder: nothing mixed, nothing lost
    dev = torch.device(device, torch.cuda.current_device()) if device == "cuda" else torch.device(device)
    train, eval_sets = load_task()
    model, ckpt, state = checkpoint.load_start(out_dir, resume, cfg, init_from, world,
                                               lambda f: checkpoint.load_model(f, dev, weights_dtype()))
    tok = checkpoint.open_tokenizer(init_from)
    stop_ids, es = stop_token_ids(tok), eval_settings()
    ref_model = checkpoint.load_model(init_from, dev, DTYPES[dtype]).eval() if kl_coef > 0 else None
    if fsdp:  # FSDP2 (distributed.py): float32 shards, the master weights; each unit computes in dtype
        model, ref_model = shard(model, DTYPES[dtype]), ref_model and shard(ref_model, DTYPES[dtype])
    summary = {"method": method, "seed": seed, "config": cfg}
    columns = table_columns(eval_sets)
    if eval_only:  # the paper's table (one column per benchmark, then the mean) of the starting model, no hints
        summary["model"] = os.path.join(ckpt, "model") if ckpt else init_from
        check_memory(model, None, tok, [], eval_sets)
        summary |= {"eval": evaluate(sampling_model(model), tok, eval_sets, stop_ids, es),
                    "eval_rows": {k: len(v) for k, v in eval_sets.items()}}
        print_table(table_title("eval", eval_sets, es), {os.path.basename(summary["model"].rstrip("/")):
                                                         summary["eval"]}, [c for c in columns if c in summary["eval"]])
        name = f"eval-{os.path.basename(ckpt)}.json" if ckpt else None  # beside a resumed run's summary.json, not over
        return checkpoint.finish(out_dir, summary, t_start, name=name)
    order = problem_order(train)
    policy = make_policy(model, ref_model)
    check_memory(model, policy, tok, order[:rl_steps * prompts_per_step], eval_sets)  # before the first evaluation

    # before RL: the starting model's accuracy (a resumed run has it in its checkpoint)
    items = {}  # per-problem results before RL
    summary |= state["summary"] if state else {"eval_before": evaluate(sampling_model(model), tok, eval_sets, stop_ids,
                                                                       es, items=items),
                                               "eval_before_items": items}
    columns = [c for c in columns if c in summary["eval_before"]]
    print_table(table_title("eval before RL", eval_sets, es), {"base": summary["eval_before"]}, columns)
    if rank == 0 and task == "arith":  # a demo base with a made.json: is it the recorded model, taught these prompts?
        check_record(init_from, summary["eval_before"], cfg)

    generator = torch.Generator(device=dev).manual_seed(seed + 100003 * rank)  # one sampling stream per rank
    if state and fsdp:  # its float32 weights and AdamW moments, each rank reading its own shards
        checkpoint.load_sharded(ckpt, model, policy.optimizer)
    start, skipped_updates = checkpoint.restore(state, policy.optimizer, policy.master, generator, rank) if state \
        else (0, 0)
    if state and rank == 0:
        print(f"resumed from {ckpt} at step {start}")
    metrics_file = checkpoint.metrics_log(out_dir, start) if rank == 0 else None  # cut back to the checkpoint's step
    per_rank = prompts_per_step // world
    replay = state["replay"][rank] if state and "replay" in state else []  # replay_size: this rank's buffer
    wandb = open_wandb(cfg, wandb_project, wandb_run_name, out_dir) if wandb_log and rank == 0 else None

    def save(step, full):
        """A checkpoint after `step` steps (full: the gathered model under FSDP2)."""
        state = {"config": cfg, "base": init_from, "skipped_updates": skipped_updates,
                 "summary": {k: v for k, v in summary.items() if k != "config"}, "replay": all_gather(replay)}
        checkpoint.save(out_dir, step, model, policy.optimizer, policy.master, generator, state, init_from, full)

    for step in range(start, rl_steps):
        t0 = time.time()
        for group in policy.optimizer.param_groups:
            group["lr"] = learning_rate(step)
        batch = [order[(step * prompts_per_step + i) % len(order)] for i in range(prompts_per_step)]
        problems = batch[rank * per_rank:(rank + 1) * per_rank]  # this rank's slice: whole groups on one rank
        more = lambda r: refill_batch(order, step, r)[rank * per_rank:(rank + 1) * per_rank]  # dapo's new problems
        outcome = train_step(policy, tok, problems, step, stop_ids, generator, dev, replay, more)
        skipped_updates += outcome.skipped
        record = step_record(step, all_gather(outcome), [p["level"] for p in batch], time.time() - t0,
                             skipped_updates, policy.optimizer.param_groups[0]["lr"], hint_ratios, hard_levels,
                             replay_size)
        if rank == 0:
            log_line(record, metrics_file, wandb)
            fixed = fixed_hint_ratio * hint_scale(step, hint_schedule, rl_steps)  # grpo_cl_hint's hint this step
            print_step(record, rl_steps, hint_column(record, method, fixed))
        if eval_interval and (step + 1) % eval_interval == 0 and step + 1 < rl_steps:
            mid = evaluate(sampling_model(model), tok, eval_sets, stop_ids, es, items=(items := {}))  # prints its line
            if rank == 0:
                log_line({"step": step, "eval": mid, "eval_items": items}, metrics_file, wandb)
        if ckpt_interval and (step + 1) % ckpt_interval == 0:
            save(step + 1, sampling_model(model) if fsdp else None)

    final = sampling_model(model)
    save(rl_steps, final if fsdp else None)  # a resumed finished run only evaluates
    summary["eval_after"] = evaluate(final, tok, eval_sets, stop_ids, es,
                                     items=summary.setdefault("eval_after_items", {}))
    print_table(table_title("eval", eval_sets, es), {"before": summary["eval_before"],
                                                     "after": summary["eval_after"]}, columns)
    if rank == 0:
        metrics_file.close()
        if wandb:
            wandb.finish()
    return checkpoint.finish(out_dir, summary | {"skipped_updates": skipped_updates}, t_start, final, init_from)


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
