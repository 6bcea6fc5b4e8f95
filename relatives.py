"""
GHPO's relatives and rivals (docs/method.md, "Relatives and rivals"), each OFF BY DEFAULT and each one setting of
ghpo.py: hint_schedule (QuestA), replay_size (TRL's replay buffer), mask_truncated (DAPO's overlong filtering),
hint_loss_coef (UFT's likelihood term on the hint). method=resample is a branch of ghpo.rollout_with_hints. This module
reads no settings: ghpo.py passes them.
"""
import torch

from kernels.loss import policy_loss


def hint_scale(step, schedule, rl_steps):
    """QuestA's schedule: the factor on every hint ratio at this step, schedule[k] in the k-th of its equal parts of
    the run's rl_steps ((1.0,), ghpo.py's default: 1.0 throughout)."""
    return schedule[min(len(schedule) - 1, step * len(schedule) // max(1, rl_steps))]


def replay_groups(groups, rewards, advantages, replay, step, seed, size):
    """TRL's GRPOWithReplayBuffer: every group whose rewards all agree (zero variance: no signal) is replaced by an
    earlier group with a signal, drawn from `replay` with probability in proportion to its score, sum_i |A_i| x std(r)
    as TRL scores it; then this step's groups with a signal join the buffer, which keeps the `size` best scores.
    replay: [[score, group], ...], updated in place. Returns the groups the update trains on and how many stand in for
    others. rewards, advantages: (P, G)."""
    std = rewards.std(1)  # (P,)
    flat = [i for i in range(len(groups)) if std[i] == 0]
    trained, replaced = list(groups), flat if replay else []
    if replaced:  # seeded by (seed, step): a resumed run draws the same groups
        scores = torch.tensor([score for score, _ in replay])
        draw = torch.Generator().manual_seed(seed * 1_000_003 + step)
        picks = torch.multinomial(scores, len(flat), replacement=len(flat) > len(replay), generator=draw)
        for i, j in zip(flat, picks.tolist()):
            trained[i] = replay[j][1]
    replay += [[float((advantages[i].abs() * std[i]).sum()), groups[i]] for i in range(len(groups)) if std[i] > 0]
    replay.sort(key=lambda item: -item[0])  # stable: at equal scores the older stays, as in TRL's heap
    del replay[size:]
    return trained, len(replaced)


def truncated(group, stop_ids):
    """(G,) bool: the group's completions cut by the length limit, whose last token is no stop token."""
    lengths = group["mask"].sum(1)  # (G,)
    last = group["tokens"].gather(1, (lengths - 1).clamp(min=0)[:, None])[:, 0]  # (G,)
    return ~torch.isin(last, torch.tensor(list(stop_ids), dtype=last.dtype, device=last.device)) | (lengths == 0)


def hint_length(hinted, plain):
    """How many of a hinted prompt's token ids are the hint, which with hint_in_answer ends the prompt: those after its
    longest common prefix with the unhinted prompt's ids `plain` (0 without a hint)."""
    return len(hinted) - next((k for k, (a, b) in enumerate(zip(plain, hinted)) if a != b), len(plain))


def hint_likelihood(h, weight, rows, targets, n_hint, coef, temperature, impl="auto"):
    """UFT's likelihood term on a micro-batch's hint tokens (docs/method.md, "Relatives and rivals"; hint_loss_coef =
    coef, the rows ghpo.Row). Returns a term whose gradient is that of coef x (sum of -log p over these hint tokens) /
    n_hint, n_hint the step's hint tokens over all micro-batches and ranks, and the mean negative log-likelihood of
    these tokens (0.0 and None when there are none). The term is policy_loss with advantage coef and no old
    log-probs: its ratio is exactly 1, so its gradient is -coef x d log p / n_hint, the likelihood's, from the same
    fused kernel (no (tokens, V) logits); its value is not the likelihood, which the second number gives.
    h: (b, L-1, C)."""
    if not n_hint:
        return 0.0, None
    hint = torch.zeros(targets.shape, device=targets.device)  # (b, L-1): positions whose next token is a hint token
    for b, row in enumerate(rows):
        hint[b, row.n_prompt - row.n_hint - 1:row.n_prompt - 1] = 1.0
    if not hint.any():
        return 0.0, None
    term, st = policy_loss(h, weight, targets, hint, torch.full((len(rows),), coef, device=h.device),
                           temperature=temperature, norm="token", denom=n_hint, impl=impl)
    return term, -float(st["logp_mean"])
