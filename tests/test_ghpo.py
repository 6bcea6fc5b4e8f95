"""ghpo.py: stage escalation on a scripted sampler, advantages, old log-probs on hinted prompts, method switches,
configuration and bad-file errors, the probes, and an end-to-end run from a tiny base model."""
import ast
import json
import os
import re
import subprocess
import sys
import types

import pytest
import torch

import evaluate
import ghpo
import logbook
import probes
import prompts
from data import demo_base
from data.arith import level_problems, make_splits
from data.datasets import load_jsonl
from helpers import TINY_BASE, TINY_RUN
from model import Qwen2, Qwen2Config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.usefixtures("restore_ghpo_config")

# ---- escalation on a scripted sampler


def test_ghpo_escalates_stages_and_regenerates_whole_groups(tok, scripted):
    problems, calls, sample = scripted
    ghpo.method = "ghpo"
    groups, stage, _ = ghpo.rollout_with_hints(None, tok, problems, 0, [], None)
    assert stage == [0, 1, 2, 3, 3]
    assert [g["ratio"] for g in groups] == [0.0, 0.25, 0.5, 0.75, 0.75]
    assert [int(g["acc"].sum()) for g in groups] == [4, 4, 4, 4, 0]  # the last stays all wrong after 0.75
    # one batch per stage, each holding exactly the groups that were still all wrong
    assert [len(texts) for texts, _ in calls] == [5, 4, 3, 2]
    for g in groups:  # the whole group comes from one prompt: hinted and unhinted samples never mix
        assert g["tokens"].shape[0] == 4 and len(set(map(tuple, g["tokens"].tolist()))) == 1
        assert tok.decode(g["prompt"]) == prompts.prompt_text(g["problem"], g["ratio"], ghpo.prompt_format())


def test_pass_probe_counts_problems_with_any_correct_sample(tok, scripted):
    problems, calls, sample = scripted  # needs no hint, 0.25, 0.5, 0.75, and one no hint rescues
    ghpo.hard_levels, ghpo.easy_levels = (5,), (1,)
    cpu_model = types.SimpleNamespace(lm_head=torch.nn.Linear(1, 1))  # the scripted sampler never calls it
    table = probes.pass_probe(cpu_model, tok, {"L5": problems}, [])
    assert {w: table[w]["L5"] for w in table} == {"0.0": 0.2, "0.25": 0.4, "0.5": 0.6, "0.75": 0.8}
    assert all(table[w]["hard"] == table[w]["L5"] for w in table) and "easy" not in table["0.0"]
    assert probes.pass_probe(cpu_model, tok, {"L5": problems[:2]}, [])["0.25"]["L5"] == 1.0


def test_mechanism_metrics():
    acc = torch.tensor([[0., 0.], [1., 0.], [0., 0.], [0., 1.], [1., 1.]])  # (P=5, G=2), final groups
    stage = [0, 0, 3, 2, 0]  # groups 2 and 3 were hinted: all wrong unhinted; group 3 was rescued
    m = logbook.mechanism(acc, stage, [6, 7, 7, 6, 1], hard_levels=(6, 7))
    assert m == {"hard_unsolved": 3 / 4, "hint_rescued": 1 / 2}
    assert logbook.mechanism(acc, [0] * 5, [1] * 5, (6, 7)) == {"hard_unsolved": None, "hint_rescued": None}


def test_step_line_and_table_titles_say_what_ran(capsys):
    record = {"step": 0, "reward": 0.5, "accuracy": 0.5, "hinted": {"0.25": 0.25, "0.5": 0.0, "0.75": 0.5},
              "response_len": 9.0, "grad_norm": 0.1, "tokens_per_s": 10.0, "step_s": 1.0}
    columns = {}
    for method in ghpo.METHODS:
        columns[method] = logbook.hint_column(record, method, ghpo.fixed_hint_ratio)
        logbook.print_step(record, 2, columns[method])
        assert ("hinted" in capsys.readouterr().out) == (method in ("ghpo", "grpo_cl_hint"))
    assert columns["ghpo"] == "hinted 0.25 0.00 0.50" and columns["resample"] == "resampled 0.25 0.00 0.50"
    assert columns["grpo_cl_hint"] == "hinted all at 0.50"  # every prompt gets the fixed hint
    assert columns["grpo"] == columns["grpo_cl"] == columns["dapo"] == ""
    es = ghpo.eval_settings()
    assert evaluate.table_title("eval", {"math500": [], "amc23": []}, es) == "eval (no hints; greedy)"
    assert "aime24 mean of 32 samples" in evaluate.table_title("eval", {"aime24": []}, es)


def test_cold_start_and_baselines_do_not_hint(tok, scripted):
    problems, calls, sample = scripted
    ghpo.method, ghpo.start_hint_step = "ghpo", 10
    _, stage, _ = ghpo.rollout_with_hints(None, tok, problems, 9, [], None)
    assert stage == [0] * 5 and len(calls) == 1
    _, stage, _ = ghpo.rollout_with_hints(None, tok, problems, 10, [], None)
    assert stage == [0, 1, 2, 3, 3]
    for method in ("grpo", "grpo_cl", "dapo"):
        ghpo.method = method
        calls.clear()
        groups, stage, _ = ghpo.rollout_with_hints(None, tok, problems, 50, [], None)
        assert stage == [0] * 5 and len(calls) == 1 and all(g["ratio"] == 0 for g in groups)
    ghpo.method = "grpo_cl_hint"  # a fixed 50% hint on every problem, no detection
    calls.clear()
    groups, stage, _ = ghpo.rollout_with_hints(None, tok, problems, 50, [], None)
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

# ---- advantages and the update


def test_group_advantages_by_hand():
    """Hand-computed values of (r - mean) / (unbiased std + 1e-4), TRL's group normalisation."""
    r = torch.tensor([[1., 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1.5, 0.5, 1, 1], [1, 1, 0, 0]])
    a = ghpo.group_advantages(r)
    # [1,0,0,0]: mean 0.25, std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5 -> 0.75 / 0.5001 and -0.25 / 0.5001
    torch.testing.assert_close(a[0], torch.tensor([1.49970006, -0.49990002, -0.49990002, -0.49990002]))
    assert torch.equal(a[1], torch.zeros(4)) and torch.equal(a[2], torch.zeros(4))  # no signal: zero advantage
    # [1.5,0.5,1,1]: mean 1, std sqrt(0.5 / 3) = 0.40824829 -> +-0.5 / 0.40834829 = +-1.22444...
    torch.testing.assert_close(a[3], torch.tensor([1.22444671, -1.22444671, 0.0, 0.0]))
    # [1,1,0,0]: mean 0.5, std sqrt(1 / 3) = 0.57735027 -> +-0.5 / 0.57745027 = +-0.86587682
    torch.testing.assert_close(a[4], torch.tensor([0.86587682, 0.86587682, -0.86587682, -0.86587682]))


def tiny_model(vocab):
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return Qwen2.from_config(cfg, seed=0)


def test_old_logprobs_use_the_hinted_prompt_and_ppo_epochs(tok):
    model = tiny_model(tok.get_vocab_size())
    p = level_problems(4)[3]
    completion = tok.encode(p["solution"]).ids
    group = lambda ratio: dict(prompt=ghpo.prompt_ids(tok, p, ratio), tokens=torch.tensor([completion]),
                               mask=torch.ones(1, len(completion), dtype=torch.bool))
    hinted_rows, plain_rows = ghpo.pack_rows([group(0.5)]), ghpo.pack_rows([group(0.0)])
    assert hinted_rows[0].n_prompt > plain_rows[0].n_prompt  # the hint opens the answer: prompt tokens
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
    policy = ghpo.make_policy(model)
    assert policy.master is None  # float32 parameters: AdamW updates them directly
    _, stats, updated = ghpo.policy_update(policy, hinted_rows * 2, torch.tensor([1.0, -1.0]), "cpu")
    assert updated and len(stats) == 2
    assert stats[0]["clip_frac"] == 0.0 and stats[1]["clip_frac"] > 0.0


def test_bfloat16_model_gets_float32_master_weights(tok):
    """Below float32 AdamW updates float32 copies and the model gets them rounded: a step too small for bfloat16
    accumulates in the master weights."""
    model = tiny_model(tok.get_vocab_size()).to(torch.bfloat16)
    ghpo.lr, ghpo.grad_clip = 1e-6, 1e9
    policy = ghpo.make_policy(model)
    assert [m.dtype for m in policy.master] == [torch.float32] * len(list(model.parameters()))
    assert policy.optimizer.param_groups[0]["params"] == policy.master
    before = [m.detach().clone() for m in policy.master]
    p = level_problems(3)[0]
    completion = tok.encode(p["solution"]).ids
    rows = ghpo.pack_rows([dict(prompt=ghpo.prompt_ids(tok, p), tokens=torch.tensor([completion] * 2),
                                mask=torch.ones(2, len(completion), dtype=torch.bool))])
    _, _, updated = ghpo.policy_update(policy, rows, torch.tensor([1.0, -1.0]), "cpu")
    moved = max((m - b).abs().max().item() for m, b in zip(policy.master, before))
    assert updated and 0 < moved < 1e-5  # an lr-1e-6 step, kept in float32
    for m, w in zip(policy.master, model.parameters()):
        assert w.dtype == torch.bfloat16 and torch.equal(w, m.to(torch.bfloat16))

# ---- the demo base's SFT data (data/demo_base.py)


def read_and_learned(x, y, m):
    """Each SFT example of a batch as (tokens read just before it, tokens learned): the runs of the loss mask."""
    import itertools
    for first, row, mask in zip(x[:, 0].tolist(), y.tolist(), m.tolist()):
        row, mask = [first] + row, [0.0] + mask
        runs = [(keep, [t for t, _ in g]) for keep, g in itertools.groupby(zip(row, mask), key=lambda r: r[1])]
        yield from ((read, learned) for (_, read), (keep, learned) in zip(runs, runs[1:]) if keep)


def test_sft_hinted_examples_read_the_hint_and_learn_only_the_rest(tok):
    """A hinted SFT example reads the problem and a solution prefix and learns the rest of the solution and its end:
    prefix + learned answer == the whole solution. Problem texts are read, never learned."""
    import random
    demo_base.configure(["--base_hint_frac=1.0", "--base_slip_frac=0.0", "--base_batch=4"])
    easy, _ = make_splits((1, 2, 3), 100)
    by_problem = {p["problem"]: p["solution"] for p in easy}
    x, y, m = demo_base.sft_batch(tok, easy, [], random.Random(0))
    assert x.shape == y.shape == m.shape == (4, 256) and (x[:, 1:] == y[:, :-1]).all()
    hinted = 0
    for read, learned in read_and_learned(x, y, m):
        problem, prefix = tok.decode(read).split("\n", 1)
        answer = tok.decode(learned, skip_special_tokens=True)
        assert prefix + answer == by_problem[problem] and "Start" not in answer and "times" not in answer
        assert learned[-1] == tok.token_to_id("<|im_end|>")
        hinted += prefix != ""
    assert hinted >= 4


def slipped_steps(text):
    """(start, sign, addend, result, rest) of each step line of a solution text."""
    return [m.groups() for m in re.finditer(r"(\d+)([+-])(\d+)=(\d+)(.*)", text)]


def test_slip_solution_keeps_its_first_lines_and_goes_on_from_what_it_wrote():
    """data/arith.py's careless student: the first k lines as written; each later result is the right one for the
    value it starts from, or one more (mod 100); each line starts from the last one's result; the last one is boxed."""
    import random
    from data.arith import slip_solution
    problems = level_problems(8)[:200]
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


def test_sft_slip_examples_read_a_clean_hint_and_learn_a_slipped_rest(tok):
    """With base_slip_frac = 1 every SFT example is a base_slip_levels problem: its hint (a clean solution prefix)
    read, the rest of a slipped solution learned, steps slipping at about base_slip_rate; no other problem appears."""
    import random
    demo_base.configure(["--base_slip_frac=1.0", "--base_slip_rate=0.6", "--base_hint_frac=0.5", "--base_batch=32"])
    easy, _ = make_splits((1, 2, 3), 100)
    slip, _ = make_splits((7, 8, 9), 100)
    by_problem = {p["problem"]: p for p in slip}
    x, y, m = demo_base.sft_batch(tok, easy, slip, random.Random(0))
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


def test_shipped_base_recipe_gives_the_same_sft_data_as_when_it_was_made():
    """The first three SFT batches of the recipe's defaults (the shipped base's settings) hash as they did on commit
    fef7fc0, the code that made data/small_base: `python -m data.demo_base --out_dir=... --threads=1` on the same
    kind of CPU trains the same base."""
    import hashlib
    import random
    demo_base.configure([])
    tok, easy, slipped = demo_base.sft_data()
    rng, h = random.Random(demo_base.base_seed), hashlib.sha1()
    for _ in range(3):
        for t in demo_base.sft_batch(tok, easy, slipped, rng):
            h.update(t.numpy().tobytes())
    assert h.hexdigest() == "e014755ec8df6b5052c936b3f89998f7fb876862"
    assert hashlib.sha1(tok.to_str().encode()).hexdigest() == "f759374fa21c9a219eb4fbfb3d33a420cc90f2d5"
    with open(os.path.join(REPO, "data", "small_base", "tokenizer.json")) as f:
        assert json.loads(f.read()) == json.loads(tok.to_str())  # the shipped base's tokenizer


def test_base_cache_key_follows_the_settings_and_the_data():
    demo_base.configure([])
    key = demo_base.base_key()
    assert demo_base.base_key() == key and demo_base.base_folder() == os.path.join("out/base", key)
    demo_base.configure(["--threads=2", "--base_cache=elsewhere"])  # not part of the recipe
    assert demo_base.base_key() == key
    for change in ("--base_seed=1", "--base_slip_rate=0.5", "--hint_in_answer=False", "--eval_per_level=99"):
        demo_base.configure(["--threads=0", "--base_cache=out/base", "--base_seed=0", "--base_slip_rate=0.6",
                             "--hint_in_answer=True", "--eval_per_level=100", change])
        assert demo_base.base_key() != key, change
    demo_base.configure(["--base_seed=0", "--base_slip_rate=0.6", "--hint_in_answer=True", "--eval_per_level=100",
                         "--out_dir=here"])
    assert demo_base.base_folder() == "here"

# ---- configuration


def test_config_overrides_are_type_checked(tmp_path):
    cfg = ghpo.configure(["--config", "small.py", "--method=grpo", "--seed=3", "--out_dir=out/x", "--lr=1e-4",
                          "--hint_ratios=(0.5,0.75)", "--chat_template=true"])
    assert (cfg["method"], cfg["seed"], cfg["out_dir"], cfg["lr"]) == ("grpo", 3, "out/x", 1e-4)
    assert cfg["hint_ratios"] == (0.5, 0.75) and cfg["chat_template"] is True
    cfg = ghpo.configure(["--benchmarks=aime24,math500", "--hard_levels=7", "--train_levels=1,2"])
    assert (cfg["benchmarks"], cfg["hard_levels"], cfg["train_levels"]) == (("aime24", "math500"), (7,), (1, 2))
    assert ghpo.configure(["--benchmarks=('gsm8k',)"])["benchmarks"] == ("gsm8k",)
    with pytest.raises(ValueError, match=r"--seed: seed must be int"):
        ghpo.configure(["--seed=abc"])
    with pytest.raises(ValueError, match=r"unknown config key 'learning_rate'.*did you mean"):
        ghpo.configure(["--learning_rate=1"])
    with pytest.raises(ValueError, match=r"unknown config key 'hint_ratio'; did you mean hint_ratios"):
        ghpo.configure(["--hint_ratio=0.5"])
    with pytest.raises(ValueError, match=r"method must be one of"):
        ghpo.configure(["--method=ppo"])
    with pytest.raises(ValueError, match=r"unknown config key 'base_lr'"):  # the demo base's, not the loop's
        ghpo.configure(["--base_lr=1e-3"])
    bad = tmp_path / "bad.py"
    bad.write_text("seed = 1\ngroup_sise = 8\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}:2: unknown config key 'group_sise'.*group_size"):
        ghpo.configure(["--config", str(bad)])
    bad.write_text("rl_steps = 'ten'\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}:1: rl_steps must be int"):
        ghpo.configure([f"--config={bad}"])
    with pytest.raises(ghpo.UsageError, match="nowhere.py"):
        ghpo.configure(["--config", "nowhere.py"])


def test_small_config_is_the_defaults():
    """ghpo.py's defaults are the CPU demo: configs/small.py only names its output folder."""
    defaults = ghpo.configure([])
    assert ghpo.configure(["--config", "small.py"]) == defaults | {"out_dir": "out/small"}


def run_script(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def help_lines(out, module):
    """{key: (shown default, comment)} of a --help output's lines for a module's settings."""
    lines = {}
    for key in module.config_keys:
        line = next(l for l in out.splitlines() if l.strip().startswith(f"--{key}="))
        shown, comment = (line.split("=", 1)[1].split("  ", 1) + [""])[:2]
        lines[key] = (shown, comment.strip())
    return lines


@pytest.mark.parametrize("command, modules", [(["ghpo.py"], [ghpo]), (["-m", "data.demo_base"], [demo_base]),
                                              (["probes.py"], [ghpo, probes])])
def test_help_lists_every_setting_with_its_default_and_comment(command, modules):
    out = run_script(*command, "--help")
    assert out.returncode == 0 and out.stderr == ""
    for module in modules:
        for key, (shown, comment) in help_lines(out.stdout, module).items():
            default = getattr(module, key)
            assert (shown if isinstance(default, str) and default.isprintable() else ast.literal_eval(shown)) == default
            assert comment, f"--{key} has no comment"
    listed = {l.strip()[2:].split("=")[0] for l in out.stdout.splitlines() if l.startswith("    --")}
    assert listed == {k for m in modules for k in m.config_keys}  # the loop's help holds no base_* setting


def test_cli_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    """A bad key, a bad value, a bad config file, a missing config file, a missing checkpoint and CUDA on a machine
    without it: exit status 2 and one line naming the key, file or line."""
    bad = tmp_path / "bad.py"
    bad.write_text("seed = 1\ngroup_sise = 8\n")
    syntax = tmp_path / "syntax.py"
    syntax.write_text("seed = 1\nlr = (\n")
    binary = tmp_path / "binary.py"
    binary.write_bytes(b"\xff\xfe\x00seed")
    cases = [(["--learning_rate=1"], "unknown config key 'learning_rate'; did you mean"),
             (["--rl_steps=ten"], "--rl_steps: rl_steps must be int"),
             (["--base_lr=0.1"], "unknown config key 'base_lr'"),
             (["--config", str(bad)], f"{bad}:2: unknown config key 'group_sise'"),
             (["--config", str(syntax)], f"{syntax}:2: SyntaxError"),
             (["--config", str(binary)], f"{binary}: cannot read the config file"),
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
    out = run_script("ghpo.py", "--config", "nowhere.py")  # the script itself: status 2, one line, no traceback
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "nowhere.py" in out.stderr
    for command in (["compare.py", "--bogus=1"], ["-m", "data.demo_base", "--n_layers=2"],
                    ["probes.py", "--config", "nowhere.py"]):
        out = run_script(*command)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, (command, out.stderr)


def test_every_shipped_config_loads():
    folder = os.path.join(REPO, "configs")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    assert names == ["qwen2.5-7b.py", "qwen2.5-math-1.5b.py", "small.py"]
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

# ---- a tiny demo base model: its command, bad files, the run end to end


def test_demo_base_command_records_how_it_was_made(tiny_base, tmp_path, capsys):
    made = json.loads(open(os.path.join(tiny_base, "made.json")).read())
    assert sorted(os.listdir(tiny_base)) == ["config.json", "made.json", "model.safetensors", "tokenizer.json"]
    assert made["command"].startswith("python -m data.demo_base --n_layer=1")
    assert made["settings"]["base_steps"] == 20 and "threads" in made["machine"]
    assert set(made["eval_before"]) == {"L1", "L2", "L3", "L7", "L8", "L9", "easy", "hard"}
    assert demo_base.make_base(TINY_BASE + ["--threads=1", f"--base_cache={os.path.dirname(tiny_base)}"]) == tiny_base
    assert "made already" in capsys.readouterr().out  # the same settings: found in the cache, not trained again
    run = lambda folder, out, *extra: ghpo.main(["--config", "small.py", "--eval_per_level=8", "--threads=1",
                                                 f"--init_from={folder}", "--rl_steps=0", f"--out_dir={out}", *extra])
    run(tiny_base, tmp_path / "a")  # evaluated as the command evaluated it: the same settings and thread count
    out = capsys.readouterr().out
    assert "the recorded model" in out and "learned other prompts" not in out
    run(tiny_base, tmp_path / "d", "--eval_per_level=4", "--eval_levels=(1,7)")  # a smaller evaluation: like with like
    out = capsys.readouterr().out
    assert "the recorded weights (sha256 as in made.json); evaluated on other problems" in out
    assert "NOT the recorded" not in out and "learned other prompts" not in out
    run(tiny_base, tmp_path / "b", "--hint_in_answer=False", "--eval_per_level=8", "--eval_levels=(1,2,3,7,8,9)")
    assert "learned other prompts than this run shows: hint_in_answer=False (base: True)" in capsys.readouterr().out
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in os.listdir(tiny_base):
        (copy / name).write_bytes(open(os.path.join(tiny_base, name), "rb").read())
    made["eval_before"]["hard"] += 0.5  # as if the weights scored otherwise here
    (copy / "made.json").write_text(json.dumps(made))
    run(copy, tmp_path / "c")
    assert "NOT the recorded model (accuracy differs by up to 0.500)" in capsys.readouterr().out


def broken_copy(folder, dest, name, cut=None, text=None):
    """A copy of a model folder with one file cut to `cut` bytes or replaced by `text`."""
    os.makedirs(dest)
    for n in os.listdir(folder):
        data = open(os.path.join(folder, n), "rb").read()
        if n == name:
            data = data[:cut] if text is None else text.encode()
        open(os.path.join(dest, n), "wb").write(data)
    return dest


@pytest.mark.parametrize("name, cut, text, message", [
    ("model.safetensors", 1000, None, "model.safetensors: not a readable safetensors file"),
    ("model.safetensors", 5, None, "model.safetensors: not a readable safetensors file"),
    ("config.json", None, '{"hidden_size": 32,', "config.json: invalid JSON"),
    ("config.json", None, '[1, 2]', "config.json: expected a JSON object, got list"),
    ("config.json", None, '{"model_type": "qwen2", "vocab_size": 5}', "config.json: missing required key(s)"),
    ("tokenizer.json", 50, None, "tokenizer.json: not a readable tokenizer.json"),
    ("made.json", 30, None, "made.json: not a base model's record"),
])
def test_bad_model_files_are_one_line(tiny_base, tmp_path, capsys, name, cut, text, message):
    folder = broken_copy(tiny_base, str(tmp_path / "broken"), name, cut, text)
    assert ghpo.cli(TINY_RUN + [f"--init_from={folder}", "--rl_steps=0", f"--out_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and os.path.join(folder, name) in err and message in err, err


def test_bad_train_file_line_is_one_line(tmp_path, capsys):
    f = tmp_path / "train.jsonl"
    f.write_text(json.dumps({"problem": "1+1?", "solution": "\\boxed{2}", "answer": "2", "level": 3}) + "\n{oops\n")
    assert ghpo.cli(["--task=math", f"--train_file={f}", "--benchmarks=()", f"--out_dir={tmp_path / 'o'}"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"ghpo.py: error: {f}:2: invalid JSON (Expecting property name enclosed in double quotes)"


def test_tiny_end_to_end_run_and_probes(tiny_base, tmp_path):
    """The whole run from the tiny base: the files it writes, with the keys and ranges they must have (whether
    training learns is test_learning.py's question), and the probes of that base."""
    out = tmp_path / "run"
    args = TINY_RUN + [f"--init_from={tiny_base}", f"--out_dir={out}", "--rl_steps=3", "--micro_batch=8"]
    summary = ghpo.main(args)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["method"] == "ghpo" and saved["seed"] == 0 and saved["wall_seconds"] > 0
    for key in ("eval_before", "eval_after"):
        assert set(saved[key]) == {"L1", "L7", "easy", "hard"}
        assert all(0.0 <= v <= 1.0 for v in saved[key].values())
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [0, 1, 2]
    assert {"reward", "accuracy", "hinted", "response_len", "grad_norm", "tokens_per_s", "hard_unsolved",
            "hint_rescued"} <= set(lines[0])
    assert os.path.isfile(out / "model" / "model.safetensors") and os.path.isfile(out / "model" / "tokenizer.json")
    assert summary["eval_after"] == saved["eval_after"] and os.listdir(out / "ckpt-000003")
    table = probes.main(args + ["--probe_per_level=4", f"--out_dir={tmp_path / 'probes'}"])
    assert json.loads((tmp_path / "probes" / "probes.json").read_text())["pass_probe"] == table["pass_probe"]
    assert set(table["hint_probe"]) == set(table["pass_probe"]) == {"0.0", "0.25", "0.5", "0.75"}
    assert all(0.0 <= v <= 1.0 for w in table["pass_probe"] for v in table["pass_probe"][w].values())
    assert set(table["step_probe"]["L7"]) == {str(k) for k in range(1, 9)}  # 7 step lines and the answer line
    reach = table["reach_probe"]  # the hard level only, pass_k samples; chains are hits, hits are samples
    assert set(reach["pass"]) == {"L7", "hard"} and reach["k"] == 32 and reach["hint"]["ratio"] == 0.75
    assert reach["chain"]["L7"] <= reach["pass"]["L7"] and reach["chain_samples"]["L7"] <= reach["right_samples"]["L7"]


def test_resume_without_an_intact_checkpoint_is_one_line(tiny_base, tmp_path, capsys):
    out = tmp_path / "run"
    args = TINY_RUN + [f"--init_from={tiny_base}", f"--out_dir={out}", "--rl_steps=1"]
    ghpo.main(args)
    state = out / "ckpt-000001" / "state.pt"
    state.write_bytes(state.read_bytes()[:100])
    capsys.readouterr()
    assert ghpo.cli(args + ["--resume=True"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{state}: not a readable checkpoint" in err
    assert err.endswith(f"no intact checkpoint left in {out} to resume from")
