"""ghpo.py: hints, stage escalation on a scripted sampler, advantages, old log-probs on hinted prompts, method
switches, configuration errors, dataset loader errors, and a tiny end-to-end run."""
import json
import os
import re
import types

import pytest
import torch

import ghpo
import probes
from data import demo_base
import rollout
from data.arith import build_tokenizer, level_problems, make_splits
from data.datasets import load_jsonl
from helpers import sampled
from model import Qwen2, Qwen2Config


pytestmark = pytest.mark.usefixtures("restore_ghpo_config")


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer([ghpo.hint_template])

# ---- hints


def test_hint_is_template_plus_character_prefix():
    p = level_problems(4)[0]
    sol = p["solution"]
    assert ghpo.hint_text(p, 0.0) == ""
    for w in (0.25, 0.5, 0.75):
        h = ghpo.hint_text(p, w)
        assert h == ghpo.hint_template + sol[:round(len(sol) * w)]
    assert ghpo.hint_template == ("\n The following text is the beginning part of the answer, which you can refer "
                                  "to for solving the problem:\n")
    assert ghpo.prompt_text(p, 0.5) == p["problem"] + ghpo.hint_template + sol[:round(len(sol) * 0.5)] + "\n"
    ghpo.chat_template, ghpo.system_prompt = True, "Be careful."
    assert ghpo.prompt_text(p, 0.25) == (f"<|im_start|>system\nBe careful.<|im_end|>\n<|im_start|>user\n"
                                         f"{p['problem']}{ghpo.hint_text(p, 0.25)}<|im_end|>\n"
                                         "<|im_start|>assistant\n")

def test_hint_in_answer_opens_the_answer_at_a_line_boundary():
    ghpo.hint_in_answer = True
    p = level_problems(5)[0]
    steps = p["solution"].split("\n")[:-1]
    assert len(steps) == 5 and ghpo.hint_text(p, 0.5) == ""  # nothing in the user message
    for w, k in ((0.25, 1), (0.5, 2), (0.75, 4)):  # round(5 * w) step lines, never the answer line
        prefix = "".join(s + "\n" for s in steps[:k])
        assert ghpo.solution_prefix(p, w) == prefix
        assert ghpo.prompt_text(p, w) == p["problem"] + "\n" + prefix
        assert p["solution"].startswith(prefix) and "boxed" not in prefix
    assert ghpo.prompt_text(p, 0.0) == p["problem"] + "\n"
    ghpo.chat_template = True
    assert ghpo.prompt_text(p, 0.25) == (f"<|im_start|>user\n{p['problem']}<|im_end|>\n<|im_start|>assistant\n"
                                         + steps[0] + "\n")


def test_countdown_lines_say_how_many_steps_are_left():
    from data.arith import make_problem
    from verify import verify
    p = make_problem(37, 8, 3, countdown=True)
    assert p["solution"] == "37+8=45, 2 left\n45+8=53, 1 left\n53+8=61, 0 left\n\\boxed{61}"
    assert make_problem(37, 8, 3)["solution"] == "37+8=45\n45+8=53\n53+8=61\n\\boxed{61}"
    assert verify(p["solution"], p["answer"])
    tok = build_tokenizer([ghpo.hint_template], countdown=True)
    wide = [p for p in make_splits((1, 4), 300, countdown=True, wide_levels=(4,))[1] if p["level"] == 4]
    assert len(wide) == 300 and all(10 <= abs(int(re.split(r"[+-]", p["solution"])[1].split("=")[0])) <= 99
                                    for p in wide)  # two-digit addends at a wide level
    for q in level_problems(7, countdown=True)[:50] + wide[:50]:  # every token is known and decodes back
        ids = tok.encode(q["problem"] + "\n" + q["solution"]).ids
        assert tok.token_to_id("[UNK]") not in ids and tok.decode(ids) == q["problem"] + "\n" + q["solution"]


# ---- escalation on a scripted sampler


def scripted_sampler(tok, needed_ratio, calls):
    """Stands in for rollout.sample_groups: a problem is answered right only when its prompt carries a hint of at
    least needed_ratio[problem]; records every batch of prompts it is asked for."""
    end = tok.token_to_id("<|im_end|>")

    def sample(model, prompts, G, max_new_tokens, **kw):
        calls.append([tok.decode(p) for p in prompts])
        rows = []
        for ids in prompts:
            text = tok.decode(ids)
            problem = text.split(ghpo.hint_template)[0].rstrip("\n")
            hint = text.split(ghpo.hint_template)[1][:-1] if ghpo.hint_template in text else ""
            p = needed_ratio[problem]
            ratio = 0.0 if not hint else round(len(hint) / len(p["solution"]), 2)
            answer = p["answer"] if ratio >= p["needs"] else str((int(p["answer"]) + 1) % 100)
            completion = tok.encode(f"\\boxed{{{answer}}}").ids + [end]
            rows += [completion] * G
        return sampled(rows, len(prompts), G)
    return sample


@pytest.fixture
def scripted(tok, monkeypatch):
    problems = [dict(level_problems(5)[i]) for i in range(5)]
    for p, needs in zip(problems, (0.0, 0.25, 0.5, 0.75, 2.0)):  # 2.0: unsolvable even with the last hint
        p["needs"] = needs
    by_text = {p["problem"]: p for p in problems}
    calls = []
    monkeypatch.setattr(rollout, "sample_groups", scripted_sampler(tok, by_text, calls))
    ghpo.group_size = 4
    return problems, calls


def test_ghpo_escalates_stages_and_regenerates_whole_groups(tok, scripted):
    problems, calls = scripted
    ghpo.method = "ghpo"
    groups, stage = ghpo.rollout_with_hints(None, tok, problems, step=0, stop_ids=[], generator=None)
    assert stage == [0, 1, 2, 3, 3]
    assert [g["ratio"] for g in groups] == [0.0, 0.25, 0.5, 0.75, 0.75]
    assert [int(g["acc"].sum()) for g in groups] == [4, 4, 4, 4, 0]  # the last stays all wrong after 0.75
    # one batch per stage, each holding exactly the groups that were still all wrong
    assert [len(c) for c in calls] == [5, 4, 3, 2]
    for g in groups:  # the whole group comes from one prompt: hinted and unhinted samples never mix
        assert g["tokens"].shape[0] == 4 and len(set(map(tuple, g["tokens"].tolist()))) == 1
        assert tok.decode(g["prompt"]) == ghpo.prompt_text(g["problem"], g["ratio"])


def test_pass_probe_counts_problems_with_any_correct_sample(tok, scripted):
    problems, calls = scripted  # needs no hint, 0.25, 0.5, 0.75, and one no hint rescues
    ghpo.hard_levels, ghpo.easy_levels, ghpo.probe_per_level = (5,), (1,), 100
    cpu_model = types.SimpleNamespace(lm_head=torch.nn.Linear(1, 1))  # the scripted sampler never calls it
    table = probes.pass_probe(ghpo, cpu_model, tok, {"L5": problems}, stop_ids=[])
    assert {w: table[w]["L5"] for w in table} == {"0.0": 0.2, "0.25": 0.4, "0.5": 0.6, "0.75": 0.8}
    assert all(table[w]["hard"] == table[w]["L5"] for w in table) and "easy" not in table["0.0"]
    ghpo.probe_per_level = 2  # only the first problems of each level are probed
    assert probes.pass_probe(ghpo, cpu_model, tok, {"L5": problems}, stop_ids=[])["0.25"]["L5"] == 1.0


def test_mechanism_metrics():
    ghpo.hard_levels = (6, 7)
    acc = torch.tensor([[0., 0.], [1., 0.], [0., 0.], [0., 1.], [1., 1.]])  # (P=5, G=2), final groups
    stage = [0, 0, 3, 2, 0]  # groups 2 and 3 were hinted: all wrong unhinted; group 3 was rescued
    m = ghpo.mechanism(acc, stage, levels=[6, 7, 7, 6, 1])
    assert m == {"hard_unsolved": 3 / 4, "hint_rescued": 1 / 2}
    assert ghpo.mechanism(acc, [0] * 5, levels=[1] * 5) == {"hard_unsolved": None, "hint_rescued": None}


def test_cold_start_and_baselines_do_not_hint(tok, scripted):
    problems, calls = scripted
    ghpo.method, ghpo.start_hint_step = "ghpo", 10
    _, stage = ghpo.rollout_with_hints(None, tok, problems, step=9, stop_ids=[], generator=None)
    assert stage == [0] * 5 and len(calls) == 1
    _, stage = ghpo.rollout_with_hints(None, tok, problems, step=10, stop_ids=[], generator=None)
    assert stage == [0, 1, 2, 3, 3]
    for method in ("grpo", "grpo_cl", "dapo"):
        ghpo.method = method
        calls.clear()
        groups, stage = ghpo.rollout_with_hints(None, tok, problems, step=50, stop_ids=[], generator=None)
        assert stage == [0] * 5 and len(calls) == 1 and all(g["ratio"] == 0 for g in groups)
    ghpo.method = "grpo_cl_hint"  # a fixed 50% hint on every problem, no detection
    calls.clear()
    groups, stage = ghpo.rollout_with_hints(None, tok, problems, step=50, stop_ids=[], generator=None)
    assert len(calls) == 1 and all(g["ratio"] == 0.5 for g in groups)
    assert [int(g["acc"].sum()) for g in groups] == [4, 4, 4, 0, 0]


def test_curriculum_order_and_dapo_filter():
    train, _ = make_splits((1, 2, 3), 300)
    ghpo.method, ghpo.seed = "grpo", 1
    shuffled = ghpo.problem_order(train)
    assert sorted(p["problem"] for p in shuffled) == sorted(p["problem"] for p in train)
    assert [p["level"] for p in shuffled[:50]] != sorted(p["level"] for p in shuffled[:50])
    for method in ("grpo_cl", "grpo_cl_hint"):
        ghpo.method = method
        ghpo.rl_steps, ghpo.prompts_per_step = 10_000, 32  # the run visits every problem: all of them sorted
        levels = [p["level"] for p in ghpo.problem_order(train)]
        assert levels == sorted(levels)
        ghpo.rl_steps = 30  # a short run: the 960 problems it visits go from easy to hard, every level among them
        visited = [p["level"] for p in ghpo.problem_order(train)[:960]]
        assert visited == sorted(visited) and set(visited) == {1, 2, 3}
    acc = torch.tensor([[0., 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1]])
    ghpo.method = "dapo"
    assert ghpo.trained_groups(acc) == [1, 3]
    ghpo.method = "ghpo"
    assert ghpo.trained_groups(acc) == [0, 1, 2, 3]

def test_sft_rows_hide_every_hard_answer(tok):
    """The base model's SFT rows: easy problems solved in full; with base_partial_frac, rows that end with the first
    1..n-1 steps of a hard problem, never its last step, its answer or an end token. The loss mask covers solutions,
    never a problem's text."""
    import random
    easy, _ = make_splits((1, 2, 3), 300)
    hard, _ = make_splits((4, 5), 300)
    demo_base.base_batch, demo_base.base_row_len, ghpo.easy_levels, ghpo.hard_levels = 16, 256, (1, 2, 3), (4, 5)
    end = tok.token_to_id("<|im_end|>")
    for frac in (0.0, 1.0):
        demo_base.base_partial_frac = frac
        x, y, m = demo_base.sft_batch(tok, easy, hard, random.Random(0), ghpo)  # (B, L) each
        assert x.shape == y.shape == m.shape == (16, 256) and (x[:, 1:] == y[:, :-1]).all()
        for row, mask in zip(y.tolist(), m.tolist()):
            text = tok.decode(row, skip_special_tokens=False)
            learned = tok.decode([t for t, keep in zip(row, mask) if keep], skip_special_tokens=False)
            assert "Start" not in learned and "times" not in learned  # problem texts are read, never learned
            last = text.rsplit("Start with", 1)[1]  # the row's last problem and what follows it
            if frac == 0:
                assert " 4 times" not in text and " 5 times" not in text and last.count("<|im_end|>") == 1
            else:
                level = int(last.split(" times")[0].split()[-1])
                steps = [l for l in last.split("\n")[1:] if "=" in l]
                assert level in (4, 5) and 1 <= len(steps) < level and "boxed" not in last
                assert "<|im_end|>" not in last
    demo_base.base_partial_frac, demo_base.base_partial_steps = 1.0, 2  # at most the first two steps of a hard problem
    x, y, m = demo_base.sft_batch(tok, easy, hard, random.Random(1), ghpo)
    last = [tok.decode(row).rsplit("Start with", 1)[1] for row in y.tolist()]  # each row's cut-off hard problem
    cut = [len([line for line in text.split("\n")[1:] if "=" in line]) for text in last]
    assert set(cut) == {1, 2}


def sft_stream_hash(args, batches=3):
    """sha1 of the first SFT batches (inputs, targets, masks) the demo base would train on with these settings."""
    import hashlib
    import random
    ghpo.configure(args)
    tok = build_tokenizer([ghpo.hint_template], demo_base.countdown)
    train, _ = demo_base.arith_splits(ghpo.easy_levels, ghpo.eval_per_level)
    hard, _ = demo_base.arith_splits(demo_base.base_partial_levels, ghpo.eval_per_level)
    rng, h = random.Random(demo_base.base_seed), hashlib.sha1()
    for _ in range(batches):
        for t in demo_base.sft_batch(tok, train, hard, rng, ghpo):
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def test_sft_stream_is_unchanged_by_the_move_to_demo_base():
    """The demo base's SFT data stream equals the one ghpo.py produced before the base recipe moved to
    data/demo_base.py (hashes computed on main d82d1cd with the same settings): same batches, so the same base."""
    assert sft_stream_hash(["--config", "small_bridge.py", "--base_batch=8"]) == "9df00523399f8ef26e279d18b8e0fa25a9207186"


def test_sft_stream_with_hints_in_the_user_message_is_unchanged():
    """As above from ghpo.py's defaults (hints in the user message), with partial rows, tail examples and a wide level."""
    assert sft_stream_hash(["--base_batch=8", "--base_partial_frac=0.3", "--base_tail_frac=0.2",
                            "--wide_levels=(3,)"]) == "a517b283b0b8edd82fc4c3810daf5720150afac4"


def read_and_learned(x, y, m):
    """Each SFT example of a batch as (tokens read just before it, tokens learned): the runs of the loss mask."""
    import itertools
    for first, row, mask in zip(x[:, 0].tolist(), y.tolist(), m.tolist()):
        row, mask = [first] + row, [0.0] + mask
        runs = [(keep, [t for t, _ in g]) for keep, g in itertools.groupby(zip(row, mask), key=lambda r: r[1])]
        yield from ((read, learned) for (_, read), (keep, learned) in zip(runs, runs[1:]) if keep)


def test_sft_rows_with_hint_in_answer_learn_only_the_rest(tok):
    """With hint_in_answer a hinted SFT example reads the problem and a solution prefix, and learns the rest of the
    solution: prefix + learned answer == the whole solution."""
    import random
    easy, _ = make_splits((1, 2, 3), 300)
    by_problem = {p["problem"]: p["solution"] for p in easy}
    ghpo.hint_in_answer, demo_base.base_hint_frac, demo_base.base_partial_frac = True, 1.0, 0.0
    demo_base.base_batch, demo_base.base_row_len = 4, 256
    x, y, m = demo_base.sft_batch(tok, easy, [], random.Random(0), ghpo)
    hinted = 0
    for read, learned in read_and_learned(x, y, m):
        problem, prefix = tok.decode(read).split("\n", 1)
        answer = tok.decode(learned, skip_special_tokens=True)
        assert prefix + answer == by_problem[problem]
        hinted += prefix != ""
    assert hinted >= 4


def test_sft_tail_examples_learn_only_the_last_steps(tok):
    """With base_tail_frac a hard problem's early steps are read (prompt tokens) and only its last base_tail_steps
    steps, its answer and its end are learned: read + learned == the whole solution."""
    import random
    easy, _ = make_splits((1, 2, 3), 300)
    hard, _ = make_splits((4, 5, 6), 300)
    by_problem = {p["problem"]: p for p in hard}
    demo_base.base_tail_frac, demo_base.base_partial_frac = 1.0, 0.0
    demo_base.base_batch, demo_base.base_row_len = 4, 256
    end = tok.token_to_id("<|im_end|>")
    for tail in (1, 2):
        demo_base.base_tail_steps = tail
        x, y, m = demo_base.sft_batch(tok, easy, hard, random.Random(tail), ghpo)
        seen = 0
        for read, learned in read_and_learned(x, y, m):
            problem, prefix = tok.decode(read, skip_special_tokens=True).split("\n", 1)
            p = by_problem[problem]
            assert learned[-1] == end and prefix + tok.decode(learned, skip_special_tokens=True) == p["solution"]
            assert prefix.count("=") == p["level"] - tail  # the steps read
            seen += 1
        assert seen >= 4


def slipped_steps(text):
    """(start, sign, addend, result, rest) of each step line of a solution text."""
    return [m.groups() for m in re.finditer(r"(\d+)([+-])(\d+)=(\d+)(.*)", text)]


def test_slip_solution_keeps_its_first_lines_and_goes_on_from_what_it_wrote():
    """data/arith.py's careless student: the first k lines as written; each later result is the right one for the
    value it starts from, or one more (mod 100); each line starts from the last one's result; the last one is boxed."""
    import random
    from data.arith import slip_solution
    problems = level_problems(8, countdown=True)[:200]
    assert all(slip_solution(p, 0, 0.0, random.Random(0)) == p["solution"] for p in problems[:20])
    slips = total = 0
    for i, p in enumerate(problems):
        k = i % 4
        text = slip_solution(p, k, 0.6, random.Random(i))
        clean = p["solution"].split("\n")
        assert text.split("\n")[:k] == clean[:k] and text.count("\n") == len(clean) - 1
        steps = slipped_steps(text)
        for j, (start, sign, addend, result, rest) in enumerate(steps):
            right = (int(start) + (1 if sign == "+" else -1) * int(addend)) % 100
            assert int(result) in (right, (right + 1) % 100) and rest == f", {7 - j} left"
            if j:
                assert start == steps[j - 1][3]
            if j >= k:
                slips, total = slips + (int(result) != right), total + 1
        assert text.endswith(f"\\boxed{{{int(steps[-1][3])}}}")
    assert abs(slips / total - 0.6) < 0.05  # 1,300 steps after the kept lines: 0.6 +- 0.014 (one sd)
    assert all(slip_solution(p, 0, 1.0, random.Random(0)) != p["solution"] for p in problems[:20])


def test_sft_slip_examples_read_a_clean_hint_and_learn_a_slipped_rest():
    """With base_slip_frac = 1 every SFT example is a base_slip_levels problem: its hint (a clean solution prefix)
    read, the rest of a slipped solution learned, steps slipping at about base_slip_rate; no other problem appears."""
    import random
    ghpo.configure(["--countdown=True", "--hint_in_answer=True", "--base_slip_frac=1.0", "--base_slip_rate=0.6",
                    "--base_hint_frac=0.5", "--base_batch=32"])
    tok = build_tokenizer([ghpo.hint_template], True)
    easy, _ = demo_base.arith_splits((1, 2, 3), 300)
    slip, _ = demo_base.arith_splits((7, 8, 9), 300)
    by_problem = {p["problem"]: p for p in slip}
    x, y, m = demo_base.sft_batch(tok, easy, [], random.Random(0), ghpo, slip)
    slips = total = hinted = 0
    for read, learned in read_and_learned(x, y, m):
        problem, prefix = tok.decode(read, skip_special_tokens=True).split("\n", 1)
        p = by_problem[problem]
        answer = tok.decode(learned, skip_special_tokens=True)
        assert p["solution"].startswith(prefix) and learned[-1] == tok.token_to_id("<|im_end|>")
        hinted += prefix != ""
        steps = slipped_steps(prefix + answer)
        assert len(steps) == p["level"]
        for start, sign, addend, result, _ in steps[prefix.count("\n"):]:
            right = (int(start) + (1 if sign == "+" else -1) * int(addend)) % 100
            slips, total = slips + (int(result) != right), total + 1
    assert hinted >= 4 and total >= 150 and abs(slips / total - 0.6) < 0.12


# ---- advantages and the update


def test_group_advantages():
    r = torch.tensor([[1., 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1.5, 0.5, 1, 1]])
    a = ghpo.group_advantages(r)
    std = torch.tensor([0., 0, 0, 1]).std()  # unbiased
    torch.testing.assert_close(a[0], (r[0] - 0.25) / (std + 1e-4))
    assert torch.equal(a[1], torch.zeros(4)) and torch.equal(a[2], torch.zeros(4))  # no signal: zero advantage
    torch.testing.assert_close(a[3], (r[3] - 1.0) / (r[3].std() + 1e-4))


def tiny_model(vocab):
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return Qwen2.from_config(cfg, seed=0)


def test_old_logprobs_use_the_hinted_prompt_and_ppo_epochs(tok):
    model = tiny_model(tok.get_vocab_size())
    p = level_problems(4)[3]
    completion = tok.encode(p["solution"]).ids
    group = lambda ratio: dict(prompt=tok.encode(ghpo.prompt_text(p, ratio)).ids, tokens=torch.tensor([completion]),
                               mask=torch.ones(1, len(completion), dtype=torch.bool))
    hinted_rows, plain_rows = ghpo.pack_rows([group(0.5)]), ghpo.pack_rows([group(0.0)])
    old = ghpo.sequence_logprobs(model, hinted_rows, "cpu")[0]  # (1, L-1)
    ids, targets, mask = ghpo.batch_tensors(hinted_rows, "cpu")
    with torch.no_grad():
        full = torch.log_softmax(model(ids[:, :-1]), -1).gather(-1, targets[..., None])[..., 0]
    m = mask.bool()
    assert m.sum() == len(completion)
    torch.testing.assert_close(old[m], full[m], atol=1e-5, rtol=0)  # scored on the prompt actually used
    plain = ghpo.sequence_logprobs(model, plain_rows, "cpu")[0]
    assert (plain[ghpo.batch_tensors(plain_rows, "cpu")[2].bool()] - old[m]).abs().max() > 1e-3
    # two updates of one batch: the first sees ratio 1 (nothing clipped), the second a moved policy
    ghpo.ppo_epochs, ghpo.lr, ghpo.eps_low, ghpo.eps_high = 2, 1e-2, 0.01, 0.01
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    rows = hinted_rows * 2
    _, stats, updated = ghpo.policy_update(model, opt, rows, torch.tensor([1.0, -1.0]), None, "cpu")
    assert updated and len(stats) == 2
    assert stats[0]["clip_frac"] == 0.0 and stats[1]["clip_frac"] > 0.0

# ---- configuration


def test_config_overrides_are_type_checked(tmp_path):
    cfg = ghpo.configure(["--config", "small.py", "--method=grpo", "--seed=3", "--out_dir=out/x", "--lr=1e-4",
                          "--hint_ratios=(0.5,0.75)", "--chat_template=true"])
    assert (cfg["method"], cfg["seed"], cfg["out_dir"], cfg["lr"]) == ("grpo", 3, "out/x", 1e-4)
    assert cfg["hint_ratios"] == (0.5, 0.75) and cfg["chat_template"] is True
    with pytest.raises(ValueError, match=r"--seed: seed must be int"):
        ghpo.configure(["--seed=abc"])
    with pytest.raises(ValueError, match=r"unknown config key 'learning_rate'.*did you mean"):
        ghpo.configure(["--learning_rate=1"])
    with pytest.raises(ValueError, match=r"unknown config key 'hint_ratio'; did you mean hint_ratios"):
        ghpo.configure(["--hint_ratio=0.5"])
    with pytest.raises(ValueError, match=r"method must be one of"):
        ghpo.configure(["--method=ppo"])
    bad = tmp_path / "bad.py"
    bad.write_text("seed = 1\ngroup_sise = 8\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}:2: unknown config key 'group_sise'.*group_size"):
        ghpo.configure(["--config", str(bad)])
    bad.write_text("rl_steps = 'ten'\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}:1: rl_steps must be int"):
        ghpo.configure([f"--config={bad}"])
    with pytest.raises(ghpo.UsageError, match="nowhere.py"):
        ghpo.configure(["--config", "nowhere.py"])

def run_cli(*args, env=None):
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(ghpo.__file__), "ghpo.py")
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_help_lists_every_setting_with_its_default_and_comment():
    import ast
    out = run_cli("--help")
    assert out.returncode == 0 and out.stderr == ""
    for module in (ghpo, demo_base):
        for key in module.config_keys:
            line = next(l for l in out.stdout.splitlines() if l.strip().startswith(f"--{key}="))
            shown, comment = (line.split("=", 1)[1].split("  ", 1) + [""])[:2]
            default = getattr(module, key)
            assert (shown if isinstance(default, str) and default.isprintable() else ast.literal_eval(shown)) == default
            assert comment.strip(), f"--{key} has no comment"


def test_cli_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    """A bad key, a bad value (of ghpo.py's or the demo base's), a bad config file, a missing config file, a missing
    checkpoint and CUDA on a machine without it: exit status 2 and one line naming the key, file or line."""
    bad = tmp_path / "bad.py"
    bad.write_text("seed = 1\ngroup_sise = 8\n")
    cases = [(["--learning_rate=1"], "unknown config key 'learning_rate'; did you mean"),
             (["--rl_steps=ten"], "--rl_steps: rl_steps must be int"),
             (["--base_lr=fast"], "--base_lr: base_lr must be float"),
             (["--config", str(bad)], f"{bad}:2: unknown config key 'group_sise'"),
             (["--config", "nowhere.py"], "config file 'nowhere.py' not found"),
             ([f"--init_from={tmp_path / 'no_model'}"], "init_from: no checkpoint folder")]
    if not torch.cuda.is_available():
        cases.append((["--device=cuda"], "pass --device=cpu"))
    for args, message in cases:
        assert ghpo.cli(args) == 2, args
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and message in err, err
    with pytest.raises(ghpo.UsageError, match="nowhere.py"):  # debugging: the exception itself, traceback and all
        ghpo.cli(["--debug=True", "--config", "nowhere.py"])
    out = run_cli("--config", "nowhere.py")  # the script itself: status 2, one line, no traceback
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "nowhere.py" in out.stderr


# ---- dataset loaders


def test_every_shipped_config_loads():
    folder = os.path.join(os.path.dirname(ghpo.__file__), "configs")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    assert {"small.py", "small_arith.py", "small_countdown.py"} <= set(names)
    for name in names:
        cfg = ghpo.configure(["--config", name])
        assert cfg["out_dir"].startswith("out/")


def test_dataset_loader_errors_name_file_and_line(tmp_path):
    f = tmp_path / "train.jsonl"
    rows = [{"problem": "1+1?", "solution": "It is $\\boxed{2}$.", "answer": "2", "level": 3},
            {"problem": "Empty gold", "solution": "\\boxed{}", "answer": "", "level": 3},
            {"problem": "x?", "solution": "\\boxed{5}", "answer": "5", "level": "Level 5"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    problems, skipped = load_jsonl(f, "math")
    assert [p["answer"] for p in problems] == ["2", "5"] and skipped == 1
    assert load_jsonl(f, "math", levels={5})[0][0]["problem"] == "x?"
    f.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(f))}:2: invalid JSON"):
        load_jsonl(f, "math")
    f.write_text(json.dumps({"solution": "\\boxed{1}", "answer": "1"}) + "\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(f))}:1: missing or empty key 'problem'"):
        load_jsonl(f, "math")
    with pytest.raises(ValueError, match="unknown dataset format 'mmlu'"):
        load_jsonl(f, "mmlu")
    g = tmp_path / "gsm.jsonl"
    g.write_text(json.dumps({"question": "2+2?", "answer": "2+2=<<2+2=4>>4\n#### 4"}) + "\n")
    assert load_jsonl(g, "gsm8k")[0][0]["answer"] == "4"

# ---- end to end


def test_tiny_end_to_end_run(tmp_path):
    out = tmp_path / "run"
    args = ["--config", "small.py", "--init_from=scratch", f"--out_dir={out}", f"--base_cache={tmp_path / 'base'}",
            "--n_layer=1", "--n_embd=32", "--n_head=2", "--n_kv_head=1", "--n_inner=64", "--base_steps=30", "--base_batch=8",
            "--base_row_len=128", "--rl_steps=3", "--prompts_per_step=4", "--group_size=4", "--eval_per_level=8",
            "--probe_per_level=4", "--max_new_tokens=24", "--micro_batch=8", "--eval_levels=(1,4)",
            "--train_levels=(1,4)", "--hard_levels=(4,)"]
    summary = ghpo.main(args)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["method"] == "ghpo" and saved["seed"] == 0 and saved["wall_seconds"] > 0
    for key in ("eval_before", "eval_after"):
        assert set(saved[key]) == {"L1", "L4", "easy", "hard"}
        assert all(0.0 <= v <= 1.0 for v in saved[key].values())
    assert set(saved["hint_probe"]) == set(saved["pass_probe"]) == {"0.0", "0.25", "0.5", "0.75"}
    assert all(0.0 <= v <= 1.0 for w in saved["pass_probe"] for v in saved["pass_probe"][w].values())
    assert set(saved["step_probe"]["L4"]) == {"1", "2", "3", "4", "5"}
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [0, 1, 2]
    assert {"reward", "accuracy", "hinted", "response_len", "grad_norm", "tokens_per_s", "hard_unsolved",
            "hint_rescued"} <= set(lines[0])
    assert os.path.isfile(out / "model" / "model.safetensors")
    assert summary["eval_after"] == saved["eval_after"]
    # a second method from the same seed reuses the cached base model (same starting accuracy)
    ghpo.main(args + ["--method=grpo", f"--out_dir={tmp_path / 'grpo'}"])
    other = json.loads((tmp_path / "grpo" / "summary.json").read_text())
    assert other["eval_before"] == saved["eval_before"] and len(os.listdir(tmp_path / "base")) == 1


def test_shipped_base_records_how_it_was_made_and_is_checked_at_load(tmp_path, capsys):
    from data import demo_base
    tiny = ["--config", "small.py", f"--base_cache={tmp_path / 'base'}", "--n_layer=1", "--n_embd=32", "--n_head=2",
            "--n_kv_head=1", "--n_inner=64", "--base_steps=20", "--base_batch=8", "--base_row_len=128",
            "--eval_per_level=8", "--probe_per_level=4", "--max_new_tokens=24", "--eval_levels=(1,4)",
            "--train_levels=(1,4)", "--hard_levels=(4,)", "--group_size=4"]
    target = tmp_path / "shipped"
    demo_base.ship(str(target), tiny)
    made = json.loads((target / "made.json").read_text())
    assert sorted(os.listdir(target)) == ["config.json", "made.json", "model.safetensors", "tokenizer.json"]
    assert made["command"].startswith(f"python -m data.demo_base {target} --config small.py")
    assert made["settings"]["base_steps"] == 20 and "threads" in made["machine"]
    assert set(made["eval_before"]) == {"L1", "L4", "easy", "hard"}
    run = tiny + [f"--init_from={target}", "--rl_steps=0", "--probe_per_level=0", "--eval_only=False"]
    ghpo.main(run + [f"--out_dir={tmp_path / 'a'}"])
    assert "the recorded model" in capsys.readouterr().out
    made["eval_before"]["hard"] += 0.5  # as if the weights scored otherwise here
    (target / "made.json").write_text(json.dumps(made))
    ghpo.main(run + [f"--out_dir={tmp_path / 'b'}"])
    assert "NOT the recorded model (accuracy differs by up to 0.500)" in capsys.readouterr().out
