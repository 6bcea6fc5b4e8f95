"""The real-model path on the CPU: a random tiny Qwen2 checkpoint in Hugging Face format with a byte-level BPE
tokenizer, the qwen2.5-math-1.5b config (chat template, task=math, benchmarks), exact resume after a kill (past a
corrupt newer checkpoint), and two gloo ranks under torchrun giving the single-process update."""
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import ghpo
import rollout
import prompts
from data.datasets import BENCHMARKS, PAPER_BENCHMARKS
from helpers import byte_bpe_tokenizer, sampled
from test_gpqa import ROWS as GPQA_ROWS, write_csv
from model import Qwen2, Qwen2Config, load_tokenizer
from verify import format_ok

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = ("tokens_per_s", "step_s", "sample_s", "train_s")


pytestmark = pytest.mark.usefixtures("restore_ghpo_config")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random-weight tiny Qwen2 saved in Hugging Face format, a byte-level BPE tokenizer.json with Qwen's special
    tokens, and a train file of real MATH level 3-5 problems whose answers are one digit (a random model then gets
    some right through the verifier's last-number fallback, so groups have mixed rewards and updates are non-zero)."""
    root = tmp_path_factory.mktemp("tiny")
    rows = [json.loads(l) for l in open(os.path.join(REPO, "data", "math_train_l345.jsonl"))][:2000]
    picked = [r for r in rows if r["answer"] in tuple("0123456789")][:8]
    train = root / "math.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in picked))
    tok = byte_bpe_tokenizer([r["problem"] + "\n" + r["solution"] for r in rows[:300]])
    folder = root / "Qwen2-tiny"
    cfg = Qwen2Config(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True, eos_token_id=tok.token_to_id("<|im_end|>"))
    Qwen2.from_config(cfg, seed=0).save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))
    return dict(folder=str(folder), train=str(train), problems=picked)


def real_args(tiny, out, *extra):
    """The real-model config with CPU-sized overrides: same code path (chat template, task=math, benchmarks)."""
    return ["--config", "qwen2.5-math-1.5b.py", f"--init_from={tiny['folder']}", "--device=cpu", f"--out_dir={out}",
            f"--train_file={tiny['train']}", "--threads=1", "--prompts_per_step=4", "--group_size=8",
            "--max_new_tokens=12", "--micro_batch=16", *extra]


def metrics(out):
    return [{k: v for k, v in json.loads(l).items() if k not in TIMING} for l in open(os.path.join(out, "metrics.jsonl"))]


def weights(folder):
    return load_file(os.path.join(folder, "model.safetensors"))

# ---- end to end: train, then evaluate on every benchmark


def test_real_config_trains_then_evaluates_every_benchmark(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    gpqa = f"--gpqa_file={write_csv(tmp_path / 'gpqa.csv', GPQA_ROWS)}"  # written rows: GPQA is not shipped
    summary = ghpo.main(real_args(tiny, out, "--rl_steps=2", "--bench_limit=2", "--aime_samples=2", gpqa))
    # the config's settings reached the loop: chat template with the recipe's system prompt, bfloat16
    assert ghpo.chat_template and ghpo.system_prompt.startswith("You are a helpful AI Assistant")
    assert ghpo.dtype == "bfloat16" and ghpo.task == "math"
    prompt = prompts.prompt_text(tiny["problems"][0], 0.0, ghpo.prompt_format())
    assert prompt.startswith("<|im_start|>system\nYou are a helpful") and prompt.endswith("<|im_start|>assistant\n")
    names = set(BENCHMARKS)
    for key in ("eval_before", "eval_after"):
        assert set(summary[key]) == names | {"mean"}
        assert all(0.0 <= v <= 1.0 for v in summary[key].values())
        paper = [summary[key][n] for n in PAPER_BENCHMARKS]  # the paper's six; GSM8K stays out of the mean
        assert len(paper) == 6 and summary[key]["mean"] == pytest.approx(sum(paper) / 6)
    lines = metrics(out)
    assert [l["step"] for l in lines] == [0, 1] and all(l["skipped_updates"] == 0 for l in lines)
    assert any(l["grad_norm"] > 0 for l in lines)  # mixed rewards: a real update happened ...
    # ... kept in float32 master weights: lr 1e-6 steps that bfloat16 weights alone would round away
    state = torch.load(out / "ckpt-000002" / "state.pt", weights_only=True)  # the end-of-run checkpoint
    init = Qwen2.from_pretrained(tiny["folder"], dtype=torch.float32)
    assert all(m.dtype == torch.float32 for m in state["master"])
    assert max((m - p).abs().max().item() for m, p in zip(state["master"], init.parameters())) > 0
    assert weights(out / "model")["model.norm.weight"].dtype == torch.bfloat16
    capsys.readouterr()

    # eval-only on the trained model (a Hugging Face folder with its tokenizer): the paper-shaped table
    ev = tmp_path / "eval"
    summary = ghpo.main(real_args(tiny, ev, f"--init_from={out / 'model'}", "--eval_only=True", "--bench_limit=3",
                                  "--aime_samples=2", gpqa))
    table = capsys.readouterr().out
    header = next(l.split() for l in table.splitlines() if l.split()[:1] == ["aime24"])
    assert header == ["aime24", "math500", "olympiadbench", "amc23", "minerva", "gpqa_diamond", "mean", "gsm8k"]
    assert table.splitlines()[-2].split()[0] == "model" and len(table.splitlines()[-2].split()) == 9
    assert table.splitlines()[-1].endswith(f"-> {ev}: summary.json")  # the last line names what it wrote
    saved = json.loads((ev / "summary.json").read_text())
    assert set(saved["eval"]) == names | {"mean"} and saved["eval_rows"] == {n: 3 for n in names}
    assert saved["eval"] == summary["eval"] and not os.path.exists(ev / "metrics.jsonl")


def test_benchmark_files_load_and_limit(tmp_path, capsys):
    ghpo.gpqa_file = write_csv(tmp_path / "gpqa.csv", GPQA_ROWS)
    for name, (file, fmt) in BENCHMARKS.items():
        ghpo.task, ghpo.benchmarks, ghpo.bench_limit, ghpo.eval_only = "math", (name,), 4, True
        _, evals = ghpo.load_task()
        assert list(evals) == [name] and len(evals[name]) == 4 and all(p["answer"] for p in evals[name])
    ghpo.gpqa_file = str(tmp_path / "absent.csv")  # not shipped: skipped with one line
    capsys.readouterr()
    assert ghpo.load_task()[1] == {}
    assert capsys.readouterr().out.strip().splitlines() == [
        f"gpqa_diamond: skipped, no file {ghpo.gpqa_file!r} (not shipped; docs/usage.md says where to get it)"]
    ghpo.benchmarks = ("aime24", "mmlu")
    with pytest.raises(ValueError, match="benchmarks: unknown mmlu"):
        ghpo.load_task()

SPEC_FORMAT = r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"  # the released code's test (docs/method.md)


@pytest.mark.parametrize("text, ok", [
    ("<think>\nsteps\n</think>\n<answer>\n\\boxed{5}\n</answer>", True),
    ("<think>\n\n</think>\n<answer>\n\n</answer>", True),  # empty sections
    ("<think>\na\n\nb\n</think>\n<answer>\n5\n</answer>\nwhat follows", True),  # re.match: a later line is free
    ("<think>\na\n</think>\n<answer>\n5\n</answer> tail", False),  # the closing tag must end its line
    (" <think>\na\n</think>\n<answer>\n5\n</answer>", False),  # anything before <think>
    ("<think>a\n</think>\n<answer>\n5\n</answer>", False),  # no newline after <think>
    ("<think>\na\n</think>\n\n<answer>\n5\n</answer>", False),  # a blank line between the blocks
    ("<think>\na\n</think>\n<answer>\n5</answer>", False),  # no newline before </answer>
    ("<think>\na\n</think>\n<answer>\n5\n", False),  # cut off before </answer>
    ("<answer>\n5\n</answer>", False), ("\\boxed{5}", False),
])
def test_format_pattern_of_the_real_config_is_the_released_codes(text, ok):
    ghpo.configure(["--config", "qwen2.5-math-1.5b.py"])
    assert ghpo.format_pattern == SPEC_FORMAT and ghpo.format_reward == 0.5
    assert format_ok(text, ghpo.format_pattern) == ok == bool(re.match(SPEC_FORMAT, text, re.DOTALL | re.MULTILINE))


def test_format_pattern_default_and_bad_pattern():
    ghpo.configure([])  # the demo's: a \boxed{} answer anywhere
    texts = ("x\ny \\boxed{3} z", "\\boxed{", "boxed{3}", "\\boxed 3", "")
    assert [format_ok(t, ghpo.format_pattern) for t in texts] == [True, True, False, False, False]
    with pytest.raises(ValueError, match=r"format_pattern: not a regular expression .*'\(<think>'"):
        ghpo.configure(["--format_pattern=(<think>"])


def test_dr_grpo_normalises_by_rows_times_the_budget(tiny):
    """loss_norm='dr_grpo' divides the summed token loss by rows x max_new_tokens, whatever the completions' lengths:
    its gradient is the token-mean gradient times n_tokens / (rows x max_new_tokens)."""
    tok = load_tokenizer(tiny["folder"])
    prompt = tok.encode("What is 1+1?").ids
    rows = [ghpo.Row(prompt + tok.encode(" 2 \\boxed{2}").ids, len(prompt)),
            ghpo.Row(prompt + tok.encode(" 3").ids, len(prompt))]
    n_tokens = sum(len(r.ids) - r.n_prompt for r in rows)
    norms = {}
    for norm in ("token", "dr_grpo"):
        model = Qwen2.from_pretrained(tiny["folder"])
        ghpo.configure([f"--loss_norm={norm}", "--max_new_tokens=40", "--grad_clip=1e9", "--micro_batch=1"])
        ghpo.lr = 0.0
        policy = ghpo.make_policy(model)
        norms[norm], _, updated = ghpo.policy_update(policy, rows, torch.tensor([1.0, -1.0]), "cpu")
        assert updated
    assert norms["dr_grpo"] == pytest.approx(norms["token"] * n_tokens / (2 * 40), rel=1e-5)
    with pytest.raises(ValueError, match="loss_norm must be one of token, sequence, dr_grpo, got 'bnpo'"):
        ghpo.configure(["--loss_norm=bnpo"])


# ---- exact resume after a kill


def test_resume_after_kill_equals_uninterrupted_run(tiny, tmp_path, capsys):
    extra = ("--dtype=float32", "--benchmarks=()", "--rl_steps=6", "--ckpt_interval=2", "--lr=1e-3", "--seed=1")
    full = tmp_path / "full"
    ghpo.main(real_args(tiny, full, *extra))
    want = metrics(full)
    assert any(l["grad_norm"] > 0 for l in want[2:])  # the resumed steps do move the weights

    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "ghpo.py"), *real_args(tiny, cut, *extra)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while proc.poll() is None:  # kill -9 as soon as step 2 is logged: after checkpoint 2, before checkpoint 4
        if (cut / "metrics.jsonl").exists() and len((cut / "metrics.jsonl").read_text().splitlines()) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]  # killed mid-run, not finished
    assert len(metrics(cut)) < 6 and any(n.startswith("ckpt-") for n in os.listdir(cut))

    # a newer checkpoint whose weights are cut short (a full disk, an interrupted copy): passed over, with one line
    newest = max(n for n in os.listdir(cut) if n.startswith("ckpt-"))
    bad = cut / f"ckpt-{int(newest[5:]) + 1:06d}"
    shutil.copytree(cut / newest, bad)
    cut_weights = bad / "model" / "model.safetensors"
    cut_weights.write_bytes(cut_weights.read_bytes()[:1000])
    capsys.readouterr()
    ghpo.main(real_args(tiny, cut, *extra, "--resume=True"))
    out = capsys.readouterr().out
    assert f"{cut_weights}: not a readable safetensors file" in out
    assert f"resuming from the newest intact checkpoint, {cut / newest}" in out
    assert metrics(cut) == want  # every step's metrics, timing aside, the lines after the kill included
    a, b = weights(full / "model"), weights(cut / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(n for n in os.listdir(cut) if "ckpt" in n) == ["ckpt-000006"]  # older and temporary ones removed
    with pytest.raises(ValueError, match=r"written with other settings: lr=0.001 \(now 0.01\)"):
        ghpo.main(real_args(tiny, cut, *extra, "--resume=True", "--lr=1e-2"))
    # the finished run's last checkpoint evaluated again: its table goes beside summary.json, never over it
    kept = (cut / "summary.json").read_bytes()
    ghpo.main(real_args(tiny, cut, *extra, "--resume=True", "--eval_only=True"))
    assert (cut / "summary.json").read_bytes() == kept
    assert json.loads((cut / "eval-ckpt-000006.json").read_text())["model"] == str(cut / "ckpt-000006" / "model")


def test_non_finite_gradients_skip_the_update(tiny):
    model = Qwen2.from_pretrained(tiny["folder"])
    tok = load_tokenizer(tiny["folder"])
    ids = tok.encode("What is 1+1? \\boxed{2}").ids
    rows = [ghpo.Row(ids, 3), ghpo.Row(ids, 4)]
    ghpo.lr = 1e-2
    with torch.no_grad():
        model.model.norm.weight[0] = float("inf")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grad_norm, _, updated = ghpo.policy_update(ghpo.make_policy(model), rows, torch.tensor([1.0, -1.0]), "cpu")
    assert not updated and not torch.isfinite(torch.tensor(grad_norm))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

# ---- two gloo ranks under torchrun == one process on the same global batch


def scripted_sampler(model, prompts, G, max_new_tokens, stop_ids=(), **kw):
    """Stands in for rollout.sample_groups: completions are a function of the prompt ids and the row only (the
    sampling RNG of one process and of two ranks differ), every other one holding a \\boxed{} answer."""
    tok = load_tokenizer(os.environ["GHPO_TEST_TOKENIZER"])
    rows = []
    for p in prompts:
        for j in range(G):
            rng = random.Random(hashlib.sha1(f"{p}-{j}".encode()).hexdigest())
            text = f"x{rng.randint(0, 99)} \\boxed{{{rng.randint(0, 9)}}}" if j % 2 == 0 else f"{rng.random():.3f}"
            rows.append(tok.encode(text).ids[:max_new_tokens - 1] + list(stop_ids[:1]))
    return sampled(rows, len(prompts), G)


def test_two_gloo_ranks_equal_one_process(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("GHPO_TEST_TOKENIZER", tiny["folder"])
    extra = ("--dtype=float32", "--benchmarks=('math500','amc23')", "--bench_limit=3", "--rl_steps=2", "--lr=1e-3",
             "--micro_batch=3", "--group_size=4", "--ckpt_interval=1")
    script = tmp_path / "run.py"
    script.write_text(f"import sys\nsys.path[:0] = [{REPO!r}, {os.path.join(REPO, 'tests')!r}]\n"
                      "import ghpo, rollout, test_real\n"
                      "rollout.sample_groups = test_real.scripted_sampler\nghpo.exit_process(ghpo.cli(sys.argv[1:]))\n")
    two = tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), *real_args(tiny, two, *extra)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("step    1 |") == 1 and proc.stdout.count("done in") == 1  # rank 0 alone logs
    one = tmp_path / "one"
    monkeypatch.setattr(rollout, "sample_groups", scripted_sampler)
    summary = ghpo.main(real_args(tiny, one, *extra))

    a, b, init = weights(one / "model"), weights(two / "model"), weights(tiny["folder"])
    assert max((a[k] - init[k]).abs().max().item() for k in a) > 1e-4  # the update is not trivial
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=1e-5)
    m1, m2 = metrics(one), metrics(two)
    for l1, l2 in zip(m1, m2, strict=True):  # aggregated over ranks in the global batch's order
        assert {k: l1[k] for k in ("reward", "accuracy", "hinted", "response_len")} == \
               {k: l2[k] for k in ("reward", "accuracy", "hinted", "response_len")}
        assert l2["grad_norm"] == pytest.approx(l1["grad_norm"], rel=1e-5)
    saved = json.loads((two / "summary.json").read_text())
    assert saved["eval_after"] == summary["eval_after"]  # evaluation sharded over ranks and summed
    assert sorted(os.listdir(two)) == ["ckpt-000002", "metrics.jsonl", "model", "summary.json"]  # rank 0 wrote once
    state = torch.load(two / "ckpt-000002" / "state.pt", weights_only=True)
    assert len(state["generators"]) == 2 and state["step"] == 2 and state["base"] == tiny["folder"]
