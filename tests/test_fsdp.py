"""fsdp=True (FSDP2 + DCP) on the CPU: two gloo ranks under torchrun on the tiny random checkpoint of test_real.py.
Their update equals one process's on the same global batch, a run killed after a checkpoint resumes to the
uninterrupted run's metrics and weights, and the final model (gathered by rank 0) loads in transformers."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import ghpo
import rollout
from model import Qwen2
from test_real import REPO, metrics, real_args, scripted_sampler, tiny, weights  # noqa: F401 (tiny: a fixture)

pytestmark = pytest.mark.usefixtures("restore_ghpo_config")


def torchrun(tmp_path, args, scripted, wait=True):
    """ghpo.main(args) on two gloo ranks (sampling with test_real.scripted_sampler when scripted), in its own session
    so that a kill reaches the workers too."""
    script = tmp_path / "run.py"
    script.write_text(f"import sys\nsys.path[:0] = [{REPO!r}, {os.path.join(REPO, 'tests')!r}]\n"
                      "import ghpo, rollout, test_real\n"
                      + ("rollout.sample_groups = test_real.scripted_sampler\n" if scripted else "")
                      + "ghpo.exit_process(ghpo.cli(sys.argv[1:]))\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("method", ["ghpo", "dapo_drop"])
def test_fsdp_two_ranks_equal_one_process_and_load_in_transformers(tiny, tmp_path, monkeypatch, method):
    monkeypatch.setenv("GHPO_TEST_TOKENIZER", tiny["folder"])
    # dapo_drop, not the refilling dapo: a refill draws each rank's share of new problems, so two ranks need not keep
    # the groups one process keeps
    extra = ("--dtype=float32", "--benchmarks=('math500',)", "--bench_limit=3", "--rl_steps=3", "--lr=1e-3",
             "--micro_batch=3", "--group_size=4", f"--method={method}")
    if method == "dapo_drop":  # drops groups, so the ranks may train on unequal numbers of rows (unchecked); and the
        extra += ("--ppo_epochs=2", "--kl_coef=0.05")  # old and reference log-probs, from a sharded reference model
    two = tmp_path / "two"
    proc = torchrun(tmp_path, real_args(tiny, two, "--fsdp=True", *extra), scripted=True)
    assert proc.stdout.count("step    2 |") == 1 and proc.stdout.count("done in") == 1  # rank 0 alone logs
    one = tmp_path / "one"
    monkeypatch.setattr(rollout, "sample_groups", scripted_sampler)
    summary = ghpo.main(real_args(tiny, one, *extra))

    a, b, init = weights(one / "model"), weights(two / "model"), weights(tiny["folder"])
    assert max((a[k] - init[k]).abs().max().item() for k in a) > 5e-4  # real updates
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    m1, m2 = metrics(one), metrics(two)
    assert any(l["grad_norm"] > 0 for l in m1)  # which steps update depends on the scripted answers and the prompt
    for l1, l2 in zip(m1, m2, strict=True):
        assert {k: l1[k] for k in ("reward", "accuracy", "response_len")} == \
               {k: l2[k] for k in ("reward", "accuracy", "response_len")}
        assert l2["grad_norm"] == pytest.approx(l1["grad_norm"], rel=1e-5)
    saved = json.loads((two / "summary.json").read_text())
    assert saved["eval_after"] == summary["eval_after"]  # evaluated with the gathered weights, sharded over ranks
    assert sorted(os.listdir(two / "ckpt-000003")) == ["dcp", "model", "state.pt"]

    # the final model, gathered from the shards by rank 0, is one Hugging Face folder that transformers reads
    transformers = pytest.importorskip("transformers")
    hf = transformers.Qwen2ForCausalLM.from_pretrained(two / "model").eval()
    ours = Qwen2.from_pretrained(str(two / "model")).eval()
    idx = torch.randint(0, ours.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = hf(idx).logits
        torch.testing.assert_close(ours(idx), want, atol=1e-5, rtol=1e-5)
        one_model = Qwen2.from_pretrained(str(one / "model")).eval()
        torch.testing.assert_close(one_model(idx), want, atol=1e-4, rtol=1e-4)  # and the single process's


def paper_args(tiny, out, *extra):
    """configs/qwen2.5-7b.py (fsdp=True) with the same CPU-sized overrides as test_real.real_args."""
    args = real_args(tiny, out, *extra)
    return [args[0], "qwen2.5-7b.py", *args[2:]]


def test_fsdp_resume_after_kill_equals_uninterrupted_run(tiny, tmp_path):
    # dapo_drop, not the refilling dapo: a refill draws each rank's share of new problems, so two ranks need not keep
    # the groups one process keeps
    extra = ("--dtype=float32", "--benchmarks=()", "--rl_steps=4", "--ckpt_interval=2", "--lr=1e-3", "--seed=1",
             "--max_new_tokens=8")
    full = tmp_path / "full"
    proc = torchrun(tmp_path, paper_args(tiny, full, *extra), scripted=False)  # the real sampler, gathered weights
    assert "done in" in proc.stdout
    want = metrics(full)
    assert [l["step"] for l in want] == [0, 1, 2, 3] and any(l["grad_norm"] > 0 for l in want[2:])

    cut = tmp_path / "cut"
    proc = torchrun(tmp_path, paper_args(tiny, cut, *extra), scripted=False, wait=False)
    while proc.poll() is None:  # kill -9 as soon as step 2 is logged: after checkpoint 2, before checkpoint 4
        if (cut / "metrics.jsonl").exists() and len((cut / "metrics.jsonl").read_text().splitlines()) >= 3:
            os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
            break
        time.sleep(0.005)
    assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert len(metrics(cut)) < 4 and "ckpt-000002" in os.listdir(cut)

    torchrun(tmp_path, paper_args(tiny, cut, *extra, "--resume=True"), scripted=False)
    assert metrics(cut) == want  # every step's metrics, timing aside
    a, b = weights(full / "model"), weights(cut / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(n for n in os.listdir(cut) if "ckpt" in n) == ["ckpt-000004"]  # older and temporary ones removed


def test_fsdp_needs_torchrun(tiny, tmp_path):
    with pytest.raises(ghpo.UsageError, match="fsdp=True shards the model over torchrun's processes"):
        ghpo.main(paper_args(tiny, tmp_path / "x"))
    cfg = ghpo.configure(["--config", "qwen2.5-7b.py"])
    assert cfg["fsdp"] and cfg["prompts_per_step"] % 8 == 0  # the 7B recipe: sharded, its batch split over 8 GPUs
