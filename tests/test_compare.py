"""compare.py's summary over base models and RL seeds: means, spread and the per-base difference."""
import json

import compare


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
