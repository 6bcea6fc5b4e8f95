"""GHPO's relatives and rivals in ghpo.py (docs/method.md, "Relatives and rivals"): the rule of each setting on scripted
samples (what is resampled, replayed, masked, trained on, how the hint schedule moves), the compute a step logs, the
optional wandb logging, and a short run of each method from a tiny base model."""
import json
import os
import sys
import types

import pytest
import torch

import checkpoint
import compare
import ghpo
import logbook
import prompts
import relatives
import rollout
from data.arith import level_problems
from helpers import TINY_RUN, scripted_sampler
from kernels.logprob import logprobs_reference
from model import Qwen2, Qwen2Config

pytestmark = pytest.mark.usefixtures("restore_ghpo_config")




# ---- resample: GHPO's stages without the hint, and the compute a rollout counts


def test_resample_samples_all_wrong_groups_again_at_ghpos_stages_without_a_hint(tok, scripted):
    problems, calls, sample = scripted
    ghpo.method = "resample"
    groups, stage, generated = ghpo.rollout_with_hints(None, tok, problems, 0, [], None)
    # no hint ever: the four problems that need one stay all wrong through the three stages, each sampled again
    assert stage == [0, 3, 3, 3, 3] and [g["ratio"] for g in groups] == [0.0] * 5
    assert [len(texts) for texts, _ in calls] == [5, 4, 4, 4]
    assert all(ghpo.hint_template not in t for texts, _ in calls for t in texts)
    assert [int(g["acc"].sum()) for g in groups] == [4, 0, 0, 0, 0]
    assert generated[:2] == (4 * 17, sum(n for _, n in calls))  # every completion sampled, regenerations included
    calls.clear()
    ghpo.method = "ghpo"  # the same count for GHPO: 5 + 4 + 3 + 2 groups of 4
    _, stage, generated = ghpo.rollout_with_hints(None, tok, problems, 0, [], None)
    assert stage == [0, 1, 2, 3, 3] and generated[:2] == (4 * 14, sum(n for _, n in calls))
    calls.clear()
    ghpo.method, ghpo.start_hint_step = "resample", 5  # the cold start holds for resample as well
    _, stage, generated = ghpo.rollout_with_hints(None, tok, problems, 4, [], None)
    assert stage == [0] * 5 and generated.completions == 20 and len(calls) == 1


def test_step_record_sums_the_generated_compute_over_ranks():
    ghpo.hint_ratios, ghpo.replay_size = (0.25, 0.5, 0.75), 0
    one = lambda gen, cut: ghpo.StepOutcome([[1.0, 0.0]], [[1.0, 0.0]], [0], 10, [], 0.5, False, gen, cut, 0)
    r = logbook.step_record(3, [one(ghpo.Generated(6, 40), 1), one(ghpo.Generated(2, 12), 0)], [1, 7], 2.0, 0, 1e-4,
                            ghpo.hint_ratios, ghpo.hard_levels, ghpo.replay_size)
    assert (r["generated_completions"], r["generated_tokens"], r["truncated"]) == (8, 52, 0.25)
    assert r["response_len"] == 5.0 and "replayed" not in r  # the final groups' 20 tokens over 4 completions

# ---- QuestA's hint schedule


def test_hint_schedule_shrinks_every_hint_ratio_in_equal_parts_of_the_run(tok, scripted):
    problems, calls, sample = scripted
    ghpo.rl_steps, ghpo.hint_schedule = 10, (1.0, 0.5)
    assert [relatives.hint_scale(s, ghpo.hint_schedule, ghpo.rl_steps) for s in range(10)] == [1.0] * 5 + [0.5] * 5
    ghpo.rl_steps, ghpo.hint_schedule = 60, (1.0, 0.5, 0.25)
    assert [relatives.hint_scale(s, ghpo.hint_schedule, ghpo.rl_steps) for s in (0, 19, 20, 39, 40, 59)] == \
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    ghpo.hint_schedule = (1.0,)
    assert {relatives.hint_scale(s, ghpo.hint_schedule, ghpo.rl_steps) for s in range(60)} == {1.0}
    ghpo.method, ghpo.rl_steps, ghpo.hint_schedule = "ghpo", 10, (1.0, 0.5)
    groups, stage, _ = ghpo.rollout_with_hints(None, tok, problems, 4, [], None)  # first half: as GHPO
    assert [g["ratio"] for g in groups] == [0.0, 0.25, 0.5, 0.75, 0.75] and stage == [0, 1, 2, 3, 3]
    groups, stage, _ = ghpo.rollout_with_hints(None, tok, problems, 5, [], None)  # second: half the hint
    assert [g["ratio"] for g in groups] == [0.0, 0.25, 0.375, 0.375, 0.375] and stage == [0, 2, 3, 3, 3]
    assert [int(g["acc"].sum()) for g in groups] == [4, 4, 0, 0, 0]  # the 0.5 and 0.75 problems lose their hint
    ghpo.method = "grpo_cl_hint"  # the fixed hint shrinks too
    groups, _, _ = ghpo.rollout_with_hints(None, tok, problems, 7, [], None)
    assert [g["ratio"] for g in groups] == [0.25] * 5

# ---- UFT's likelihood term on the hint tokens


def tiny_model(vocab):
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return Qwen2.from_config(cfg, seed=0)


def hinted_group(tok, p, ratio, completion):
    return dict(problem=p, ratio=ratio, prompt=ghpo.prompt_ids(tok, p, ratio), tokens=torch.tensor([completion] * 2),
                mask=torch.ones(2, len(completion), dtype=torch.bool))


def test_hint_tokens_are_the_hint_that_opens_the_answer(tok):
    ghpo.hint_in_answer, ghpo.hint_loss_coef = True, 0.1
    p = level_problems(8)[5]
    completion = tok.encode("\\boxed{1}").ids
    for ratio in (0.25, 0.5, 0.75):
        g = hinted_group(tok, p, ratio, completion)
        n = relatives.hint_length(g["prompt"], ghpo.prompt_ids(tok, p))
        assert tok.decode(g["prompt"][-n:]) == prompts.solution_prefix(p["solution"], ratio, ghpo.prompt_format())
        assert [r.n_hint for r in ghpo.pack_rows([g], tok)] == [n, n]
    assert relatives.hint_length(hinted_group(tok, p, 0.0, completion)["prompt"], ghpo.prompt_ids(tok, p)) == 0
    ghpo.hint_loss_coef = 0.0  # off: no row marks a hint
    assert [r.n_hint for r in ghpo.pack_rows([hinted_group(tok, p, 0.5, completion)], tok)] == [0, 0]


def test_hint_likelihood_has_the_gradient_of_the_weighted_mean_nll_of_the_hint_tokens(tok):
    """Against autograd through full logits: hint_loss_coef x (sum of -log p over the hint tokens) / n_hint."""
    ghpo.hint_in_answer, ghpo.hint_loss_coef, ghpo.kernel_impl = True, 0.3, "torch"
    model = tiny_model(tok.get_vocab_size())
    p = level_problems(8)[2]
    groups = [hinted_group(tok, p, 0.5, tok.encode("69-3=66, 4 left").ids),
              hinted_group(tok, level_problems(3)[0], 0.0, tok.encode("\\boxed{7}").ids)]
    rows = ghpo.pack_rows(groups, tok)
    n_hint = sum(r.n_hint for r in rows)
    assert n_hint > 0 and [r.n_hint > 0 for r in rows] == [True, True, False, False]
    ids, targets, _ = ghpo.batch_tensors(rows, "cpu")
    h = model(ids[:, :-1], return_hidden=True)  # (B, L-1, C)
    term, nll = relatives.hint_likelihood(h, model.lm_head.weight, rows, targets, n_hint, 0.3, ghpo.temperature,
                                          "torch")
    term.backward()
    ours = [w.grad.clone() for w in model.parameters()]
    model.zero_grad()
    h = model(ids[:, :-1], return_hidden=True)
    logp, _ = logprobs_reference(h.flatten(0, 1), model.lm_head.weight, targets.flatten())
    logp = logp.view(targets.shape)  # (B, L-1)
    at_hint = torch.zeros_like(logp, dtype=torch.bool)
    for b, r in enumerate(rows):
        at_hint[b, r.n_prompt - r.n_hint - 1:r.n_prompt - 1] = True
    assert int(at_hint.sum()) == n_hint and tok.decode(targets[0][at_hint[0]].tolist()) == \
        prompts.solution_prefix(p["solution"], 0.5, ghpo.prompt_format())
    (0.3 * -logp[at_hint].sum() / n_hint).backward()
    for a, w in zip(ours, model.parameters()):
        torch.testing.assert_close(a, w.grad, atol=1e-6, rtol=1e-4)
    assert abs(nll - float(-logp[at_hint].mean().detach())) < 1e-5
    assert relatives.hint_likelihood(h, model.lm_head.weight, rows[2:], targets[2:], n_hint, 0.3, 1.0) == (0.0, None)


def test_policy_update_adds_the_hint_term_only_when_on(tok):
    """The same rows, the same model: hint_loss_coef 0 gives the plain update (no hint_nll), > 0 another one."""
    ghpo.hint_in_answer, ghpo.lr, ghpo.kernel_impl = True, 1e-2, "torch"
    p = level_problems(8)[2]
    moved = {}
    for coef in (0.0, 1.0):
        ghpo.hint_loss_coef = coef
        model = tiny_model(tok.get_vocab_size())
        rows = ghpo.pack_rows([hinted_group(tok, p, 0.75, tok.encode("57-3=54, 0 left").ids)], tok)
        _, stats, updated = ghpo.policy_update(ghpo.make_policy(model), rows, torch.tensor([1.0, -1.0]), "cpu")
        assert updated and ("hint_nll" in stats[0]) == (coef > 0)
        moved[coef] = torch.cat([w.detach().flatten() for w in model.parameters()])
    assert (moved[0.0] - moved[1.0]).abs().max() > 1e-4


def test_hint_loss_needs_the_hint_in_the_answer():
    with pytest.raises(ghpo.UsageError, match="needs hint_in_answer=True"):
        ghpo.configure(["--hint_loss_coef=0.1", "--hint_in_answer=False"])
    with pytest.raises(ghpo.UsageError, match="hint_schedule must be"):
        ghpo.configure(["--hint_loss_coef=0.0", "--hint_schedule=(1.0,-0.5)"])
    assert ghpo.configure(["--hint_schedule=1.0,0.5"])["hint_schedule"] == (1.0, 0.5)

# ---- TRL's replay buffer


def replay(groups, buffer, step):
    """relatives.replay_groups as a step calls it, with ghpo.py's settings."""
    rewards = ghpo.group_rewards(groups)
    return relatives.replay_groups(groups, rewards, ghpo.group_advantages(rewards), buffer, step, ghpo.seed,
                                   ghpo.replay_size)


def group(rewards, tag):
    acc = torch.tensor(rewards)
    return dict(acc=acc, fmt=torch.zeros_like(acc), tag=tag)


def test_replay_stands_earlier_groups_with_signal_in_for_zero_variance_groups():
    ghpo.replay_size, ghpo.seed, ghpo.format_reward = 64, 0, 0.0
    buffer = []
    groups = [group([0., 0, 0, 0], "a"), group([1., 0, 0, 0], "b"), group([1., 1, 1, 1], "c"), group([1., 1, 0, 0], "d")]
    trained, replaced = replay(groups, buffer, 0)
    assert trained == groups and replaced == 0  # an empty buffer: nothing to stand in yet
    # the groups with a signal join, scored sum |A| x std as TRL does: [1,0,0,0] 2.9994 x 0.5, [1,1,0,0] 3.4635 x 0.5774
    assert [g["tag"] for _, g in buffer] == ["d", "b"]
    assert [round(s, 4) for s, _ in buffer] == [1.9997, 1.4997]
    new = [group([0., 0, 0, 0], "e"), group([1., 0, 1, 0], "f"), group([1., 1, 1, 1], "g")]
    trained, replaced = replay(new, buffer, 1)
    assert replaced == 2 and trained[1] is new[1]  # the group with a signal stays; both others stand in
    assert sorted(g["tag"] for g in (trained[0], trained[2])) == ["b", "d"]  # two draws from two: each once
    assert [g["tag"] for _, g in buffer] == ["d", "f", "b"]  # f's [1,0,1,0] scores as d's: the older first
    again = replay(new, [list(x) for x in buffer[:2]], 1)[0]
    assert [g["tag"] for g in again] == [g["tag"] for g in replay(new, [list(x) for x in buffer[:2]], 1)[0]]
    ghpo.replay_size = 1  # the buffer keeps the best scores only
    small = []
    replay(groups, small, 0)
    assert [g["tag"] for _, g in small] == ["d"]


def test_replay_draws_in_proportion_to_the_score():
    ghpo.replay_size = 64
    flat = [group([0., 0, 0, 0], "flat")]
    picks = [replay(flat, [[3.0, {"tag": "x"}], [1.0, {"tag": "y"}]], s)[0][0]
             for s in range(400)]
    share = sum(p["tag"] == "x" for p in picks) / 400
    assert abs(share - 0.75) < 0.1  # sd 0.022


def test_replay_buffer_round_trips_through_a_checkpoint_state(tok, tmp_path):
    """The buffer's groups (tensors, the problem, texts) load back with weights_only, as a resume reads state.pt."""
    p = level_problems(3)[0]
    g = hinted_group(tok, p, 0.5, tok.encode("\\boxed{1}").ids) | {"acc": torch.tensor([1.0, 0.0]),
                                                                    "fmt": torch.zeros(2), "texts": ["a", "b"]}
    state = {k: 0 for k in checkpoint.STATE_KEYS} | {"replay": [[[1.5, g]]]}
    os.makedirs(tmp_path / "ck")
    torch.save(state, tmp_path / "ck" / "state.pt")
    back = checkpoint.read_state(str(tmp_path / "ck"))["replay"][0][0]
    assert back[0] == 1.5 and back[1]["problem"] == p and torch.equal(back[1]["tokens"], g["tokens"])

# ---- overlong filtering and the rows a step trains on


def captured_update(seen):
    def update(policy, rows, advantages, dev):
        seen.append((rows, advantages))
        return 0.0, [], True
    return update


def test_a_step_trains_on_the_right_rows(tok, scripted, monkeypatch):
    """train_step's rows: mask_truncated drops the completions cut by the length limit (and their advantages) but
    they still count in their group's advantages; replay puts the buffer's rows in; the log counts what was cut."""
    problems, calls, _ = scripted
    monkeypatch.setattr(rollout, "sample_groups", scripted_sampler(tok, {p["problem"]: p for p in problems}, calls,
                                                                   cut={problems[0]["problem"]}))
    seen = []
    monkeypatch.setattr(ghpo, "policy_update", captured_update(seen))
    policy = types.SimpleNamespace(model=torch.nn.Linear(1, 1))
    end = [tok.token_to_id("<|im_end|>")]
    ghpo.method, ghpo.mask_truncated = "grpo", False
    out = ghpo.train_step(policy, tok, problems, 0, end, None, "cpu")
    assert len(seen[-1][0]) == 20 and out.truncated == 4 and out.generated.completions == 20
    ghpo.mask_truncated = True
    out = ghpo.train_step(policy, tok, problems, 0, end, None, "cpu")
    rows, adv = seen[-1]
    assert len(rows) == 16 == len(adv) and out.truncated == 4  # problem 0's four cut completions are out
    assert all(r.ids[:r.n_prompt] != ghpo.prompt_ids(tok, problems[0]) for r in rows)
    ghpo.method, ghpo.mask_truncated, ghpo.replay_size = "ghpo", False, 8  # hinted groups with a signal are kept
    buffer = []
    ghpo.train_step(policy, tok, problems, 0, end, None, "cpu", buffer)
    assert buffer == []  # every GHPO group is all right or all wrong here: no signal to keep, nothing to replay
    buffer.append([1.0, dict(problem=problems[4], ratio=0.0, prompt=[5, 6], tokens=torch.tensor([[7, end[0]]] * 4),
                             mask=torch.ones(4, 2, dtype=torch.bool), acc=torch.tensor([1., 0, 0, 0]),
                             fmt=torch.zeros(4))])
    out = ghpo.train_step(policy, tok, problems, 0, end, None, "cpu", buffer)
    rows, adv = seen[-1]
    assert out.replayed == 5 and all(r.ids == [5, 6, 7, end[0]] for r in rows)  # all five stood in for
    torch.testing.assert_close(adv, ghpo.group_advantages(torch.tensor([[1., 0, 0, 0]])).flatten().repeat(5))

# ---- wandb, the nanoGPT way


def test_wandb_logs_the_lines_of_metrics_jsonl_and_is_imported_only_when_on(tiny_base, tmp_path, monkeypatch):
    logged, inits = [], []
    fake = types.SimpleNamespace(init=lambda **kw: inits.append(kw), log=lambda d, step: logged.append((step, d)),
                                 finish=lambda: logged.append("finish"))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    out = tmp_path / "run"
    args = TINY_RUN + ["--threads=1", f"--init_from={tiny_base}", f"--out_dir={out}", "--rl_steps=2", "--eval_interval=1",
                       "--wandb_log=True", "--wandb_project=p"]
    ghpo.main(args)
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] == "finish" and [d for _, d in logged[:-1]] == lines and len(lines) == 3  # 2 steps, 1 eval
    assert [s for s, _ in logged[:-1]] == [0, 0, 1] and inits[0]["project"] == "p" and inits[0]["name"] == "run"
    assert inits[0]["config"]["wandb_log"] is True
    monkeypatch.setitem(sys.modules, "wandb", None)  # importing it now raises: a run without wandb_log never does
    ghpo.main(TINY_RUN + ["--threads=1", f"--init_from={tiny_base}", f"--out_dir={tmp_path / 'plain'}", "--rl_steps=1",
                          "--wandb_log=False"])

# ---- short runs of every method and variant, and compare.py over methods with their own settings


VARIANTS = {"resample": ["--method=resample"], "questa": ["--hint_schedule=(1.0,0.5)"],
            "uft": ["--hint_loss_coef=0.5"], "replay": ["--method=grpo", "--replay_size=8"],
            "dapo_overlong": ["--method=dapo", "--mask_truncated=True"], "dapo_drop": ["--method=dapo_drop"],
            "grpo_g8": ["--method=grpo", "--group_size=8"]}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_short_run_of_each_variant_completes(tiny_base, tmp_path, variant):
    out = tmp_path / variant
    summary = ghpo.main(TINY_RUN + ["--threads=1", f"--init_from={tiny_base}", f"--out_dir={out}", "--rl_steps=3",
                                    *VARIANTS[variant]])
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [0, 1, 2] and set(summary["eval_after"]) == {"L1", "L7", "easy", "hard"}
    G = 8 if variant == "grpo_g8" else 4
    for l in lines:  # everything sampled: at least the final groups, more when groups were sampled again
        assert l["generated_completions"] >= 4 * G and l["generated_tokens"] >= l["response_len"] * 4 * G - 1e-6
        assert 0 <= l["truncated"] <= 1
    regenerated = any(sum(l["hinted"].values()) for l in lines)
    if variant == "dapo_overlong":  # refills: whole rounds of 4 new problems, at most dapo_max_rounds of them
        assert all(l["generated_completions"] % (4 * G) == 0 and l["generated_completions"] <= 4 * 4 * G
                   and l["trained_groups"] <= 4 for l in lines)
    else:
        assert (sum(l["generated_completions"] for l in lines) > 12 * G) == regenerated
    assert ("replayed" in lines[0]) == (variant == "replay") and ("hint_nll" in lines[0]) == (variant == "uft")


def test_eval_interval_does_not_change_training(tiny_base, tmp_path):
    """Evaluations inside the run (compare.png's points) leave the training steps as they were."""
    runs = {}
    for every in (0, 1):
        out = tmp_path / f"e{every}"
        ghpo.main(TINY_RUN + ["--threads=1", f"--init_from={tiny_base}", f"--out_dir={out}", "--rl_steps=3",
                              f"--eval_interval={every}"])
        runs[every] = [{k: v for k, v in json.loads(l).items() if k not in ("step_s", "tokens_per_s", "sample_s",
                                                                              "train_s")}
                       for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert runs[1][::2] == runs[0] and [l.get("eval") is not None for l in runs[1]] == [False, True] * 2 + [False]


def test_compare_runs_methods_with_their_own_settings(tiny_base, tmp_path, monkeypatch, capsys):
    """compare.py with named methods and overrides, each ghpo.py run in this process: its folders, the settings
    each got, the compute table and the accuracy-against-tokens curve."""
    commands, defaults = [], {k: getattr(ghpo, k) for k in ghpo.config_keys}

    def run(cmd, folder, threads):  # each run from the defaults, as its own process would start
        commands.append(cmd)
        for k, v in defaults.items():
            setattr(ghpo, k, v)
        ghpo.main(cmd[1:] + [f"--threads={threads}"])
    monkeypatch.setattr(compare, "run", run)
    s = compare.main(TINY_RUN + ["--threads=1", f"--init_from={tiny_base}", "--rl_steps=2", "--eval_interval=1", "--seeds=0",
                                 "--probe_per_level=0", "--methods=ghpo,g8=grpo:group_size=8,dapo:mask_truncated=True"
                                 ",questa=ghpo:hint_schedule=(1.0,0.5)", f"--out_dir={tmp_path}", "--threads=1"])
    names = ["ghpo", "g8", "dapo-mask_truncated=True", "questa"]
    assert sorted(os.listdir(tmp_path)) == sorted([f"{n}-s0" for n in names] + ["compare.json"]
                                                  + (["compare.png"] if plot_available() else []))
    by_folder = {c[-1].split("/")[-1]: c for c in commands}
    assert "--method=grpo" in by_folder["g8-s0"] and "--group_size=8" in by_folder["g8-s0"]
    assert "--hint_schedule=(1.0,0.5)" in by_folder["questa-s0"] and "--group_size=8" not in by_folder["ghpo-s0"]
    for n in names:
        c = s["compute"][n]
        lines = [json.loads(l) for l in (tmp_path / f"{n}-s0" / "metrics.jsonl").read_text().splitlines()]
        assert c["tokens"] == [sum(l.get("generated_tokens", 0) for l in lines)]
        assert c["completions"] == [sum(l.get("generated_completions", 0) for l in lines)]
    saved = json.loads((tmp_path / "compare.json").read_text())
    curve = saved["runs"]["g8-s0"]["curve"]  # before, after step 0, after step 1 (the end)
    assert [x for x, _ in curve] == [0, saved["runs"]["g8-s0"]["tokens"] - json.loads(
        (tmp_path / "g8-s0" / "metrics.jsonl").read_text().splitlines()[2])["generated_tokens"],
        saved["runs"]["g8-s0"]["tokens"]]
    out = capsys.readouterr().out
    assert "dapo-mask_truncated=True" in out and "completions" in out and "every run (seed order)" in out


def plot_available():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def test_method_specs_and_their_errors():
    specs = compare.method_specs("ghpo,grpo:group_size=16,x=ghpo:hint_schedule=(1.0,0.5):hint_loss_coef=0.1")
    assert specs == [compare.Spec("ghpo", "ghpo", []), compare.Spec("grpo-group_size=16", "grpo", ["--group_size=16"]),
                     compare.Spec("x", "ghpo", ["--hint_schedule=(1.0,0.5)", "--hint_loss_coef=0.1"])]
    for bad, message in (("ppo", "method must be one of"), ("grpo:lr", "not KEY=VALUE"),
                         ("grpo:seed=3", "not KEY=VALUE"), ("grpo:group_size=big", "group_size must be int"),
                         ("grpo,grpo", "its own name")):
        with pytest.raises(compare.UsageError, match=message):
            compare.method_specs(bad)
