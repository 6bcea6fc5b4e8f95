"""compare.py's summary over base models and RL seeds: means, spread and the per-base difference, and its run
schedule."""
import json
import os

import compare
import ghpo
from data import demo_base


def fake_results():
    """Two base models x two RL seeds x two methods, hard accuracies chosen so every number is known."""
    hard = {(0, "ghpo"): [.40, .50], (0, "grpo"): [.20, .30], (1, "ghpo"): [.30, .30], (1, "grpo"): [.35, .25]}
    out = {}
    for (b, m), xs in hard.items():
        for s, x in enumerate(xs):
            out[(b, m, s)] = {"eval_before": {"L1": .9, "easy": .9, "hard": .05 * (b + 1)},
                              "eval_after": {"L1": .8 + s / 10, "easy": .8 + s / 10, "hard": x},
                              "mechanism": {"hard_unsolved": .9 if m == "grpo" else .5,
                                            "hint_rescued": .95 if m == "ghpo" else None}}
    return out


def test_summarize_means_spread_and_per_base_difference():
    s = compare.summarize(fake_results(), ["ghpo", "grpo"])
    assert s["bases"] == [0, 1]
    assert s["hard"]["ghpo"] == {0: [.40, .50], 1: [.30, .30]}
    assert abs(s["after"]["ghpo"]["hard"] - .375) < 1e-12 and abs(s["after"]["grpo"]["L1"] - .85) < 1e-12
    assert abs(s["diff"][0] - .20) < 1e-12 and abs(s["diff"][1] - 0.0) < 1e-12
    assert s["mechanism"]["grpo"] == {"hard_unsolved": .9, "hint_rescued": None}
    assert abs(compare.sd([.40, .50, .30, .30]) - 0.0957427107756338) < 1e-12 and compare.sd([.3]) == 0.0


def test_report_prints_every_base_and_the_spread(capsys):
    results = fake_results()
    compare.report(results, ["ghpo", "grpo"], {b: results[(b, "ghpo", 0)]["eval_before"] for b in (0, 1)})
    out = capsys.readouterr().out
    assert "base 0 (0.050)" in out and "base 1 (0.100)" in out
    assert "ghpo - grpo +20.0 points" in out and "ghpo - grpo +0.0 points" in out
    assert "ghpo: hard 0.375 +- 0.096 (sd over 4 runs, min 0.300, max 0.500), hard_unsolved 0.500, " \
           "hint_rescued 0.950" in out
    assert "+10.0 points on average over 2 base model(s); per base +20.0, +0.0; min +0.0" in out


def test_run_means_reads_the_mechanism_from_metrics(tmp_path):
    lines = [{"step": 0, "reward": .1, "hard_unsolved": 1.0, "hint_rescued": None},
             {"step": 1, "reward": .2, "hard_unsolved": .5, "hint_rescued": .8},
             {"step": 1, "eval": {"L1": .5}}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    assert compare.run_means(tmp_path) == {"hard_unsolved": .75, "hint_rescued": .8}


def fake_run(calls):
    """compare.run's stand-in: records (run folder, args, threads) and writes what a finished run leaves."""
    def run(args, folder, method, seed, threads):
        calls.append((folder, args, threads))
        os.makedirs(folder, exist_ok=True)
        before, after = {"easy": .9, "hard": .1}, {"easy": .9, "hard": .2 if method == "ghpo" else .1}
        with open(os.path.join(folder, "summary.json"), "w") as f:
            json.dump({"eval_before": before, "eval_after": after}, f)
        with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"step": 0, "reward": .5, "hard_unsolved": .5, "hint_rescued": None}) + "\n")
    return run


def test_shipped_base_runs_all_in_the_pool_and_scratch_bases_train_first(tmp_path, monkeypatch,
                                                                         restore_ghpo_config):
    calls = []
    monkeypatch.setattr(compare, "run", fake_run(calls))
    out = tmp_path / "a"
    compare.main(["--config", "small.py", "--seeds=0,1", "--jobs=2", "--threads=1", f"--out_dir={out}"])
    assert {c[2] for c in calls} == {1}  # a shipped base: every run in the pool, one thread each
    first = [c for c in calls if c[0].endswith("ghpo-s0")]
    assert len(calls) == 4 and "--probe_per_level=0" not in first[0][1]  # its first run still prints the probes
    assert sum("--probe_per_level=0" in c[1] for c in calls) == 3
    calls.clear()
    cache = f"--base_cache={tmp_path / 'cache'}"
    compare.main(["--config", "small.py", "--seeds=0,1", "--jobs=2", "--threads=1", "--base_seeds=0,1", cache,
                  f"--out_dir={tmp_path / 'b'}"])
    assert [c[2] for c in calls[:2]] == [2, 2]  # each base's first run alone, training it with both jobs' threads
    assert [c[0][-10:] for c in calls[:2]] == ["b0/ghpo-s0", "b1/ghpo-s0"] and len(calls) == 8
    assert all("--init_from=scratch" in c[1] for c in calls) and {c[2] for c in calls[2:]} == {1}
    calls.clear()  # base 1 in the cache already: only base 0's first run goes alone
    ghpo.configure(["--config", "small.py", "--base_seed=1", "--init_from=scratch", cache])
    os.makedirs(demo_base.base_path(ghpo))
    open(os.path.join(demo_base.base_path(ghpo), "tokenizer.json"), "w").close()
    compare.main(["--config", "small.py", "--seeds=0,1", "--jobs=2", "--threads=1", "--base_seeds=0,1", cache,
                  f"--out_dir={tmp_path / 'c'}"])
    assert calls[0][0].endswith("b0/ghpo-s0") and calls[0][2] == 2 and {c[2] for c in calls[1:]} == {1}
    b1_first = [c for c in calls if c[0].endswith("b1/ghpo-s0")]
    assert len(calls) == 8 and "--probe_per_level=0" not in b1_first[0][1]  # it still prints its probes
