"""
The record of a ghpo.py step (what each rank's share of it leaves: StepOutcome) and where it goes: one line of
out_dir/metrics.jsonl, one printed line, and with wandb_log the same numbers to Weights & Biases (imported only when
on, as nanoGPT does it).
"""
import json
import os
from dataclasses import dataclass
from typing import NamedTuple

import torch


class Generated(NamedTuple):
    """What a step sampled in all: every completion, all-wrong groups' regenerations included (the compute it spent)."""
    completions: int
    tokens: int               # completion tokens, each up to and including its stop token
    prompt_tokens: int = 0    # prompt tokens prefilled: each sampled group's prompt once (rollout.py), hints included
    hint_tokens: int = 0      # of which the hints add (a hinted prompt's length minus its unhinted prompt's)


@dataclass
class StepOutcome:
    """What one rank's share of a step leaves for the log (gathered over the ranks, in rank order)."""
    acc: list                 # (P, G) accuracy rewards of the final groups
    rewards: list             # (P, G) rewards: accuracy + format_reward x format
    stage: list               # (P,) the hint stage each group ended at (0: no hint, s: hint_ratios[s-1])
    tokens: int               # completion tokens of the final groups
    loss_stats: list          # per micro-batch statistics of the loss (kernels/loss.py)
    grad_norm: float          # pre-clip gradient norm (the same on every rank)
    skipped: bool             # a non-finite loss or gradient: the update was skipped
    generated: Generated      # everything sampled, regenerations included
    truncated: int            # completions of the final groups cut by the length limit
    replayed: int             # groups the update took from the replay buffer instead (replay_size)
    trained: int = 0          # groups the update trained on
    train_tokens: int = 0     # prompt + completion tokens of the rows through forward and backward, every ppo epoch
    sample_s: float = 0.0     # seconds sampling and scoring (hint stages and dapo's refills included)
    train_s: float = 0.0      # seconds from the rewards to the updated model (advantages, packing, the update)


def step_record(step, outcomes, levels, seconds, skipped_updates, lr_now, hint_ratios, hard_levels, replay_on):
    """The step's line of metrics.jsonl, over all ranks' outcomes (StepOutcome, in the global batch's order)."""
    acc = torch.tensor([a for o in outcomes for a in o.acc])  # (B, G)
    rewards = torch.tensor([r for o in outcomes for r in o.rewards])  # (B, G)
    stage, stats = [s for o in outcomes for s in o.stage], [s for o in outcomes for s in o.loss_stats]
    n_tokens = sum(o.tokens for o in outcomes)
    return {
        "step": step, "reward": rewards.mean().item(), "accuracy": acc.mean().item(),
        "hinted": {str(w): sum(s == k for s in stage) / len(stage) for k, w in enumerate(hint_ratios, 1)},
        "all_wrong": (acc.sum(1) == 0).float().mean().item(),  # groups with no signal after hints
        "response_len": n_tokens / acc.numel(), "grad_norm": outcomes[0].grad_norm,
        "tokens_per_s": n_tokens / seconds, "step_s": seconds, "lr": lr_now,
        "skipped_updates": skipped_updates,  # non-finite loss or gradients: the update was skipped
        "generated_completions": sum(o.generated.completions for o in outcomes),  # all sampled, regenerations too
        "generated_tokens": sum(o.generated.tokens for o in outcomes),
        "truncated": sum(o.truncated for o in outcomes) / acc.numel(),  # final completions cut by the length limit
    } | ({"replayed": sum(o.replayed for o in outcomes) / len(acc)} if replay_on else {}) \
        | mechanism(acc, stage, levels, hard_levels) | mean_stats(stats) | {
        # what the hint costs beside the completions: prompt tokens prefilled (hints included), the tokens the update
        # trained on, and the step's seconds split between sampling and the update (the slowest rank's)
        "prompt_tokens": sum(o.generated.prompt_tokens for o in outcomes),
        "hint_tokens": sum(o.generated.hint_tokens for o in outcomes),
        "train_tokens": sum(o.train_tokens for o in outcomes), "trained_groups": sum(o.trained for o in outcomes),
        "sample_s": max(o.sample_s for o in outcomes), "train_s": max(o.train_s for o in outcomes)}


def mechanism(acc, stage, levels, hard_levels):
    """Per step: hard_unsolved, the fraction of hard-level groups whose G unhinted samples all failed (no GRPO signal),
    and hint_rescued, the fraction of hinted groups a hint gave a correct sample (None: no such group). acc: (P, G)."""
    solved = [bool(a.sum() > 0) for a in acc]
    hard = [bool(s) or not ok for ok, s, lv in zip(solved, stage, levels) if lv in hard_levels]
    hinted = [ok for ok, s in zip(solved, stage) if s]
    return {"hard_unsolved": sum(hard) / len(hard) if hard else None,
            "hint_rescued": sum(hinted) / len(hinted) if hinted else None}


def mean_stats(stats):
    """The means over micro-batches of the loss statistics (a None, a micro-batch without that quantity, left out)."""
    means = {}
    for k in stats[0] if stats else []:
        xs = [s[k] for s in stats if s[k] is not None]
        means[k] = sum(xs) / len(xs) if xs else None
    return means


def print_step(record, rl_steps, hints=""):
    """The step's printed line; hints: the method's hint column ("" for a method that never hints)."""
    r = record
    print(f"step {r['step']:4d} | reward {r['reward']:.3f} | acc {r['accuracy']:.3f} | {hints + ' | ' if hints else ''}"
          f"len {r['response_len']:.1f} | gnorm {r['grad_norm']:.3f} | {r['tokens_per_s']:.0f} tok/s | "
          f"eta {r['step_s'] * (rl_steps - r['step'] - 1):.0f}s", flush=True)


def open_wandb(cfg, project, run_name, out_dir):
    """The wandb module with a run started (run_name "": the last folder of out_dir)."""
    import wandb
    wandb.init(project=project, name=run_name or os.path.basename(out_dir.rstrip("/")), config=cfg)
    return wandb


def log_line(line, metrics_file, wandb=None):
    """One line of metrics.jsonl, and with wandb the same numbers to wandb at its step."""
    print(json.dumps(line), file=metrics_file, flush=True)
    if wandb:
        wandb.log(line, step=line["step"])


def hint_column(record, method, fixed):
    """The step line's hint column: the share of groups at each stage where the method hints (resample: samples
    again), none where it never does, and grpo_cl_hint's one fixed hint (ratio `fixed`), which every prompt gets."""
    stages = " ".join(f"{v:.2f}" for v in record["hinted"].values())
    return {"ghpo": f"hinted {stages}", "resample": f"resampled {stages}",
            "grpo_cl_hint": f"hinted all at {fixed:.2f}"}.get(method, "")
