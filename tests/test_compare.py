"""compare.py's summary over base models and RL seeds: means, spread and the per-base difference; its run schedule
and how it sorts arguments between ghpo.py, probes.py and the demo base's command."""
import json
import os

import pytest

import compare
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
    """compare.run's stand-in: records (command, folder, threads) and writes what a finished command leaves."""
    def run(cmd, folder, threads):
        calls.append((cmd, folder, threads))
        os.makedirs(folder, exist_ok=True)
        if cmd[0] == "probes.py":
            with open(os.path.join(folder, "probes.json"), "w") as f:
                json.dump({"hint_probe": {}, "pass_probe": {"0.0": {"hard": .1}}, "step_probe": {}}, f)
        if cmd[0] != "ghpo.py":
            return
        method = next(a.split("=")[1] for a in cmd if a.startswith("--method="))
        before, after = {"easy": .9, "hard": .1}, {"easy": .9, "hard": .2 if method == "ghpo" else .1}
        with open(os.path.join(folder, "summary.json"), "w") as f:
            json.dump({"eval_before": before, "eval_after": after}, f)
        with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"step": 0, "reward": .5, "accuracy": .5, "hinted": {"0.25": 0.0}, "grad_norm": .1,
                                "hard_unsolved": .5, "hint_rescued": None}) + "\n")
    return run


def test_shipped_base_runs_all_in_the_pool_and_bases_are_made_first(tmp_path, monkeypatch, restore_ghpo_config):
    calls = []
    monkeypatch.setattr(compare, "run", fake_run(calls))
    out = tmp_path / "a"
    s = compare.main(["--config", "small.py", "--seeds=0,1", "--jobs=2", "--threads=1", f"--out_dir={out}"])
    assert sorted(c[0][0] for c in calls) == ["ghpo.py"] * 4 + ["probes.py"] and {c[2] for c in calls} == {1}
    assert not any(a.startswith("--init_from") for c in calls for a in c[0])  # the config's own (shipped) base
    assert s["diff"] == {None: pytest.approx(.1)}
    assert json.load(open(out / "compare.json"))["probes"] == {"None": {"hint_probe": {}, "pass_probe":
                                                                        {"0.0": {"hard": .1}}}}
    calls.clear()
    cache = tmp_path / "cache"
    compare.main(["--config", "small.py", "--seeds=0,1", "--jobs=2", "--threads=1", "--base_seeds=0,1",
                  f"--base_cache={cache}", "--base_slip_rate=0.5", "--hint_in_answer=False", "--lr=1e-4",
                  f"--out_dir={tmp_path / 'b'}"])
    made = calls[:2]  # each base model first, alone, with both jobs' threads
    assert [c[0][:2] for c in made] == [["-m", "data.demo_base"]] * 2 and [c[2] for c in made] == [2, 2]
    assert [c[0][-1] for c in made] == ["--base_seed=0", "--base_seed=1"]
    for c in made:  # its own settings and the shared ones, none of the loop's
        assert "--base_slip_rate=0.5" in c[0] and "--hint_in_answer=False" in c[0] and "--lr=1e-4" not in c[0]
    runs = [c for c in calls[2:] if c[0][0] == "ghpo.py"]
    assert len(runs) == 8 and {c[2] for c in calls[2:]} == {1} and len(calls) == 12
    assert all("--hint_in_answer=False" in c[0] and "--lr=1e-4" in c[0] and "--base_slip_rate=0.5" not in c[0]
               for c in runs)
    starts = {b: {a for c in runs if c[1].endswith(tuple(f"b{b}/{m}-s{s}" for m in ("ghpo", "grpo") for s in (0, 1)))
                  for a in c[0] if a.startswith("--init_from=")} for b in (0, 1)}
    assert all(len(v) == 1 for v in starts.values()) and starts[0] != starts[1]  # one base model per base seed
    assert all(str(cache) in a for v in starts.values() for a in v)
    calls.clear()  # base 1 made already (its made.json in the cache): only base 0's command runs
    demo_base.configure([f"--base_cache={cache}", "--base_slip_rate=0.5", "--hint_in_answer=False", "--base_seed=1"])
    os.makedirs(demo_base.base_folder())
    open(os.path.join(demo_base.base_folder(), "made.json"), "w").close()
    compare.main(["--config", "small.py", "--seeds=0,1", "--jobs=2", "--threads=1", "--base_seeds=0,1",
                  f"--base_cache={cache}", "--base_slip_rate=0.5", "--hint_in_answer=False", "--probe_per_level=0",
                  f"--out_dir={tmp_path / 'c'}"])
    assert [c[0][-1] for c in calls if c[0][0] == "-m"] == ["--base_seed=0"]
    assert not any(c[0][0] == "probes.py" for c in calls) and len(calls) == 9
    assert not any("--probe_per_level=0" in c[0] for c in calls)  # probes.py's setting, not the loop's


def test_compare_help_and_bad_arguments(capsys):
    compare.main(["--help"])
    assert capsys.readouterr().out.startswith("Run several methods and RL seeds of ghpo.py")
    with pytest.raises(compare.UsageError, match="cannot read argument '--bogus=1'"):
        compare.main(["--bogus=1"])
    with pytest.raises(compare.UsageError, match="integers"):
        compare.main(["--seeds=a,b"])
