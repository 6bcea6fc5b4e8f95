"""
GHPO's relatives and rivals (docs/method.md, "Relatives and rivals"), each OFF BY DEFAULT and each one setting of
ghpo.py: hint_schedule (QuestA), replay_size (TRL's replay buffer), mask_truncated (DAPO's overlong filtering). The
others live where they act in ghpo.py: method=resample (a branch of rollout_with_hints) and hint_loss_coef (UFT,
hint_likelihood). This module reads no settings: ghpo.py passes them.
"""
import torch


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
