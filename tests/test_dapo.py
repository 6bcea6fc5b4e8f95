"""DAPO's dynamic sampling as DAPO runs it (method="dapo": new problems sampled until the step is full of groups with a
signal, up to dapo_max_rounds rounds) beside today's drop-only dapo_drop; the compute a step logs beside the generated
tokens (prompt and hint tokens prefilled, tokens trained on, sampling and update seconds); and the per-problem
evaluation results (summary.json's eval_*_items)."""
import types

import pytest
import torch

import evaluate
import ghpo
import logbook
import rollout
from data.arith import level_problems
from helpers import sampled

pytestmark = pytest.mark.usefixtures("restore_ghpo_config")
G = 4


def mixed_problems(signals):
    """One problem per entry: True gets a group with a signal (2 of G right), False an all-wrong group."""
    out = []
    for i, signal in enumerate(signals):
        p = dict(level_problems(5)[i])
        p["right"] = 2 if signal else 0
        out.append(p)
    return out


def pattern_sampler(tok, problems, calls):
    """rollout.sample_groups' stand-in: a problem's first p["right"] completions are right, the others wrong."""
    by_text = {p["problem"]: p for p in problems}
    end = tok.token_to_id("<|im_end|>")

    def sample(model, prompt_list, G, max_new_tokens, **kw):
        rows = []
        for ids in prompt_list:
            p = by_text[tok.decode(ids).rstrip("\n")]
            wrong = str((int(p["answer"]) + 1) % 100)
            rows += [tok.encode(f"\\boxed{{{p['answer'] if j < p['right'] else wrong}}}").ids + [end]
                     for j in range(G)]
        out = sampled(rows, len(prompt_list), G)
        calls.append(([by_text[tok.decode(ids).rstrip("\n")] for ids in prompt_list], int(out["mask"].sum())))
        return out
    return sample


def captured_update(seen):
    def update(policy, rows, advantages, dev):
        seen.append((rows, advantages))
        return 0.0, [], True
    return update


def dapo_step(tok, order, monkeypatch, step=0):
    """One dapo step of prompts_per_step=4 from `order` (world 1): the rows it trained on, its outcome, the calls."""
    calls, seen = [], []
    monkeypatch.setattr(ghpo, "policy_update", captured_update(seen))
    monkeypatch.setattr(rollout, "sample_groups", pattern_sampler(tok, order, calls))
    ghpo.group_size, ghpo.prompts_per_step, ghpo.rl_steps, ghpo.hint_in_answer = G, 4, 1, False
    policy = types.SimpleNamespace(model=torch.nn.Linear(1, 1))
    batch = [order[(step * 4 + i) % len(order)] for i in range(4)]
    out = ghpo.train_step(policy, tok, batch, step, [tok.token_to_id("<|im_end|>")], None, "cpu", None,
                          lambda r: ghpo.refill_batch(order, step, r))
    return seen[-1][0] if seen else [], out, calls


def test_dapo_refills_the_step_with_groups_with_a_signal_and_counts_every_round(tok, monkeypatch):
    # the step's batch (1 with a signal), round 1 (2), round 2 (3): full after round 2, round 3 never drawn
    order = mixed_problems([True, False, False, False] + [False, True, True, False] + [True, True, False, True]
                           + [True] * 4)
    ghpo.method, ghpo.dapo_max_rounds = "dapo", 4
    rows, out, calls = dapo_step(tok, order, monkeypatch)
    assert [[p["problem"] for p in c[0]] for c in calls] == [[p["problem"] for p in order[i:i + 4]] for i in (0, 4, 8)]
    trained = [order[i] for i in (0, 5, 6, 8)]  # the first four groups with a signal, in the order they were sampled
    assert [r.ids[:r.n_prompt] for r in rows] == [ghpo.prompt_ids(tok, p) for p in trained for _ in range(G)]
    assert out.trained == 4 and len(out.acc) == 4  # the log's groups: the step's own batch, as for every method
    assert out.generated.completions == 12 * G and out.generated.tokens == sum(n for _, n in calls)
    assert out.generated.prompt_tokens == sum(len(ghpo.prompt_ids(tok, p)) for p in order[:12])
    assert out.generated.hint_tokens == 0
    again, out2, _ = dapo_step(tok, order, monkeypatch)  # deterministic: the same problems, rows and counts
    assert [r.ids for r in again] == [r.ids for r in rows] and out2.generated == out.generated


def test_dapo_stops_at_its_cap_and_trains_on_what_it_kept(tok, monkeypatch):
    order = mixed_problems([True, False, False, False] + [False, True, False, False] + [True] * 8)
    ghpo.method, ghpo.dapo_max_rounds = "dapo", 2  # the batch and one refill round: 2 groups with a signal of 4
    rows, out, calls = dapo_step(tok, order, monkeypatch)
    assert len(calls) == 2 and out.trained == 2 and len(rows) == 2 * G and out.generated.completions == 8 * G
    ghpo.dapo_max_rounds = 1  # no refill: as dapo_drop
    rows, out, calls = dapo_step(tok, order, monkeypatch)
    assert len(calls) == 1 and out.trained == 1 and out.generated.completions == 4 * G
    full = mixed_problems([True] * 16)  # a full first round: nothing more sampled
    ghpo.dapo_max_rounds = 4
    rows, out, calls = dapo_step(tok, full, monkeypatch)
    assert len(calls) == 1 and out.trained == 4


def test_dapo_drop_is_the_drop_only_filter(tok, monkeypatch):
    order = mixed_problems([True, False, True, False] + [True] * 12)
    ghpo.method = "dapo_drop"
    rows, out, calls = dapo_step(tok, order, monkeypatch)
    assert len(calls) == 1 and out.trained == 2 and out.generated.completions == 4 * G
    assert [r.ids[:r.n_prompt] for r in rows] == [ghpo.prompt_ids(tok, order[i]) for i in (0, 2) for _ in range(G)]
    acc = torch.tensor([[0., 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1]])
    assert ghpo.trained_groups(acc) == [1, 3]


def test_refill_batches_never_meet_the_runs_batches_nor_each_other():
    ghpo.rl_steps, ghpo.prompts_per_step, ghpo.dapo_max_rounds = 5, 3, 4
    order = list(range(1000))
    seen = [order[i] for i in range(5 * 3)]  # the run's own batches
    seen += [x for step in range(5) for r in range(1, 4) for x in ghpo.refill_batch(order, step, r)]
    assert len(seen) == len(set(seen)) == 5 * 3 * 4


def test_a_step_counts_prompt_hint_and_trained_tokens(tok, scripted, monkeypatch):
    """The scripted problems need no hint, a 0.25, 0.5 or 0.75 hint, or none helps (hints in the user message)."""
    problems, calls, _ = scripted
    seen = []
    monkeypatch.setattr(ghpo, "policy_update", captured_update(seen))
    policy = types.SimpleNamespace(model=torch.nn.Linear(1, 1))
    end = tok.token_to_id("<|im_end|>")
    plain = [len(tok.encode(p["problem"] + "\n").ids) for p in problems]
    answer = [len(tok.encode(f"\\boxed{{{p['answer']}}}").ids) + 1 for p in problems]  # right or wrong: same length
    ghpo.method = "grpo"
    out = ghpo.train_step(policy, tok, problems, 0, [end], None, "cpu")
    assert (out.generated.prompt_tokens, out.generated.hint_tokens) == (sum(plain), 0)
    assert out.train_tokens == sum(4 * (n + c) for n, c in zip(plain, answer)) and out.trained == 5
    hint = lambda i, w: len(tok.encode(ghpo.hint_template + problems[i]["solution"][
        :round(len(problems[i]["solution"]) * w)]).ids)  # the words before the hint, then the hint
    ghpo.method = "ghpo"  # stage 1: problems 1-4 at 0.25, stage 2: 2-4 at 0.5, stage 3: 3-4 at 0.75
    out = ghpo.train_step(policy, tok, problems, 0, [end], None, "cpu")
    hints = [(i, w) for i, w in [(i, .25) for i in (1, 2, 3, 4)] + [(i, .5) for i in (2, 3, 4)]
             + [(i, .75) for i in (3, 4)]]
    assert out.generated.hint_tokens == sum(hint(i, w) for i, w in hints)
    assert out.generated.prompt_tokens == sum(plain) + sum(plain[i] for i, _ in hints) + out.generated.hint_tokens
    final = [0, .25, .5, .75, .75]  # each group's last prompt: trained on whole, hint included
    assert out.train_tokens == sum(4 * (plain[i] + (hint(i, w) if w else 0) + answer[i]) for i, w in enumerate(final))
    assert out.train_tokens == sum(len(r.ids) for r in seen[-1][0])
    ghpo.ppo_epochs = 2  # every pass over the rows counts
    assert ghpo.train_step(policy, tok, problems, 0, [end], None, "cpu").train_tokens == 2 * out.train_tokens


def test_step_record_adds_the_cost_keys_after_the_old_ones():
    ghpo.hint_ratios, ghpo.replay_size = (0.25, 0.5, 0.75), 0
    one = lambda gen, tt, s, t: ghpo.StepOutcome([[1.0, 0.0]], [[1.0, 0.0]], [0], 10, [], 0.5, False, gen, 0, 0, 1,
                                                 tt, s, t)
    r = logbook.step_record(3, [one(ghpo.Generated(6, 40, 30, 12), 100, 2.0, 1.0),
                                one(ghpo.Generated(2, 12, 10, 0), 50, 1.5, 1.25)], [1, 7], 4.0, 0, 1e-4,
                            ghpo.hint_ratios, ghpo.hard_levels, ghpo.replay_size)
    assert (r["generated_completions"], r["generated_tokens"]) == (8, 52)
    assert (r["prompt_tokens"], r["hint_tokens"], r["train_tokens"], r["trained_groups"]) == (40, 12, 150, 2)
    assert (r["sample_s"], r["train_s"]) == (2.0, 1.25)  # the slowest rank's
    assert list(r)[-6:] == ["prompt_tokens", "hint_tokens", "train_tokens", "trained_groups", "sample_s", "train_s"]


def test_evaluate_writes_one_char_per_problem_in_order(tok, scripted, monkeypatch):
    problems, calls, _ = scripted  # greedy, no hint: only the first problem (it needs none) is right
    model = types.SimpleNamespace(lm_head=types.SimpleNamespace(weight=torch.zeros(1)), eval=lambda: None)
    items = {}
    acc = evaluate.evaluate(model, tok, {"L5": problems, "L6": problems[::-1]}, [], ghpo.eval_settings(), items=items)
    assert items == {"L5": "10000", "L6": "00001"} and acc["L5"] == .2
    monkeypatch.setattr(evaluate, "rank_world", lambda: (0, 2))  # rank 0 of 2: problems 0, 2, 4; rank 1 had 1, 3
    monkeypatch.setattr(evaluate, "all_sum", lambda *xs: xs)
    monkeypatch.setattr(evaluate, "all_gather", lambda mine: [mine, "ab"])
    items = {}
    evaluate.evaluate(model, tok, {"L5": problems}, [], ghpo.eval_settings(), items=items)
    assert items == {"L5": "1a0b0"}
