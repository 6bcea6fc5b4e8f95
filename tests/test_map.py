"""The map over bases (compare.py --report, --export, --match) on fake comparison folders whose numbers are known,
and probes.py's reach probe on scripted samples."""
import json
import os
import types

import pytest
import torch

import compare
import ghpo
import probes
import rollout
from data.arith import level_problems
from helpers import sampled

pytestmark = pytest.mark.usefixtures("restore_ghpo_config")
EASY = {"L1": "11", "L2": "11", "L3": "10"}


def items(hard):
    """Per-split strings: the hard levels 7, 8, 9 two problems each from a six-character string, the easy ones fixed."""
    return EASY | {f"L{lv}": hard[2 * i:2 * i + 2] for i, lv in enumerate((7, 8, 9))}


def acc(hard):
    return {"easy": 5 / 6, "hard": hard.count("1") / 6}


def fake_run(folder, per_step, before, mid, after, config=None):
    """Two steps of per_step generated tokens (plus 10 prompt, 50 trained tokens, 8 completions, 1 + 1 seconds
    each), an evaluation after the first; hard results before, mid-run and after as six-character strings."""
    os.makedirs(folder)
    step = lambda i: {"step": i, "reward": .5, "generated_tokens": per_step, "prompt_tokens": 10, "train_tokens": 50,
                      "generated_completions": 8, "sample_s": 1.0, "train_s": 1.0}
    lines = [step(0), {"step": 0, "eval": acc(mid), "eval_items": items(mid)}, step(1)]
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        f.write("".join(json.dumps(l) + "\n" for l in lines))
    summary = {"method": "x", "eval_before": acc(before), "eval_after": acc(after), "eval_before_items": items(before),
               "eval_after_items": items(after)} | ({"config": config} if config else {})
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(summary, f)


def fake_base(folder, slip):
    """ghpo and resample, seeds 0 and 1 (the same results each), with the base's made.json and probes.json."""
    for s in (0, 1):
        fake_run(os.path.join(folder, f"ghpo-s{s}"), 100, "000000", "110000", "111100")
        fake_run(os.path.join(folder, f"resample-s{s}"), 150, "000000", "100000", "111000")
    for where, name, data in (("base", "made.json", {"settings": {"base_slip_rate": slip}}),
                              ("probes", "probes.json", {"reach_probe": {"k": 32, "pass": {"hard": .5},
                                                                         "chain": {"hard": .1},
                                                                         "hint": {"pass": {"hard": .9}}}})):
        os.makedirs(os.path.join(folder, where))
        with open(os.path.join(folder, where, name), "w") as f:
            json.dump(data, f)


def test_report_reads_each_run_at_equal_compute_and_pairs_them(tmp_path, capsys):
    fake_base(tmp_path / "b6", 0.6)
    opts = compare.MAP_OPTIONS | {"pairs": "ghpo:resample,ghpo:grpo_g*", "reach": "0.5"}
    t = compare.base_table(str(tmp_path / "b6"), opts)
    assert t["equal"] == {"tokens": 200, "tokens+prompt": 220, "train_tokens": 100, "completions": 16, "seconds": 4}
    g, r = t["rows"][("ghpo", 0)], t["rows"][("resample", 1)]
    assert (g["hard"], g["hard@tokens"], r["hard"]) == (4 / 6, 4 / 6, 3 / 6)
    # resample at 200 of its 300 tokens: a third of the way from its mid-run evaluation (150) to its last
    assert r["hard@tokens"] == pytest.approx((2 / 3) * (1 / 6) + (1 / 3) * (3 / 6))
    assert r["hard@train_tokens"] == pytest.approx(3 / 6)  # both trained on 100 tokens: each at its end
    assert g["reach@tokens"] == pytest.approx(150) and r["reach@tokens"] == 300  # .5 only at its end
    assert list(t["pairs"]) == ["ghpo - resample"]  # no grpo_g* method in this base: that pair is left out
    p = t["pairs"]["ghpo - resample"]
    assert p["seeds"] == [0, 1] and p["easy"][0] == 0.0 and p["hard"][0] == pytest.approx(1 / 6)
    assert 0 <= p["hard"][1] <= 1 / 6 <= p["hard"][2] <= 1  # every per-problem difference is 0 or 1
    assert p["hard@tokens"][0] == pytest.approx(4 / 6 - r["hard@tokens"])
    assert compare.base_table(str(tmp_path / "b6"), opts)["pairs"] == t["pairs"]  # a fixed bootstrap seed
    assert t["info"] == {"slip_rate": 0.6, "pass_k": .5, "chain_k": .1, "hint_pass": .9, "k": 32}


def test_paired_bootstrap_resamples_seeds_and_problems():
    a, b = [[1, 1, 0, 0], [1, 0, 0, 0]], [[0, 1, 0, 0], [1, 0, 0, 0]]
    est, lo, hi = compare.paired_bootstrap(a, b, 2000, 0)
    assert est == 1 / 8 and lo == 0.0 and 1 / 8 < hi <= 1 / 2
    assert compare.paired_bootstrap(a, a, 200, 0) == (0.0, 0.0, 0.0)
    assert compare.pick("grpo_g*", ["ghpo", "grpo", "grpo_g10"]) == "grpo_g10" and compare.pick("grpo", ["grpo_g"]) \
        is None


def test_map_report_over_bases_prints_and_plots(tmp_path, capsys):
    for slip in (0.6, 0.9):
        fake_base(tmp_path / f"b{slip}", slip)
    png = tmp_path / "map.png"
    tables = compare.main(["--report", f"{tmp_path / 'b0.9'},{tmp_path / 'b0.6'}", "--pairs=ghpo:resample",
                           f"--map={png}"])
    out = capsys.readouterr().out
    assert [t["info"]["slip_rate"] for t in tables] == [0.9, 0.6]
    assert "slip 0.6 ghpo - resample: +16.7 [" in out and out.index("slip 0.6 ghpo") < out.index("slip 0.9 ghpo")
    assert "ghpo mean" in out and "pass@32 0.500, whole chains 0.100" in out
    assert png.is_file() == plot_available()
    again = compare.main(["--report", f"{tmp_path / 'b0.9'},{tmp_path / 'b0.6'}", "--pairs=ghpo:resample"])
    assert capsys.readouterr().out == out.replace(f"map: {png}\n", "") and again[0]["pairs"] == tables[0]["pairs"]


def test_export_keeps_the_compact_form_the_report_reads(tmp_path, capsys):
    base = tmp_path / "basemodel"
    os.makedirs(base)
    (base / "made.json").write_text(json.dumps({"settings": {"base_slip_rate": 0.7}}))
    src = tmp_path / "out"
    config = {k: getattr(ghpo, k) for k in ghpo.config_keys} | {"init_from": str(base), "group_size": 10}
    fake_run(src / "ghpo-s0", 100, "000000", "110000", "111100", json.loads(json.dumps(config)))
    fake_run(src / "grpo_g10-s0", 120, "000000", "100000", "110000", json.loads(json.dumps(config)))
    os.makedirs(src / "probes")
    (src / "probes" / "probes.json").write_text(json.dumps({"reach_probe": {"k": 32, "pass": {"hard": .3}}}))
    (src / "ghpo-s0" / "log.txt").write_text("a long log")
    compare.main(["--export", str(src), str(tmp_path / "data")])
    data = tmp_path / "data"
    assert sorted(os.listdir(data)) == ["base", "ghpo-s0", "grpo_g10-s0", "probes"]
    assert sorted(os.listdir(data / "ghpo-s0")) == ["metrics.jsonl", "summary.json"]
    for f in ("metrics.jsonl", "summary.json"):
        assert (data / "ghpo-s0" / f).read_text() == (src / "ghpo-s0" / f).read_text()
    t = compare.main(["--report", str(data), "--pairs=ghpo:grpo_g*"])[0]
    assert t["info"]["slip_rate"] == 0.7 and t["info"]["pass_k"] == .3
    assert t["pairs"]["ghpo - grpo_g10"]["hard"][0] == pytest.approx(2 / 6)
    assert compare.main(["--match", str(src / "ghpo-s0"), str(src / "grpo_g10-s0")]) == round(10 * 200 / 240)
    assert "G_matched = round(10 x 200 / 240) = round(8.333) = 8" in capsys.readouterr().out
    with pytest.raises(compare.UsageError, match="takes 2 argument"):
        compare.main(["--export", str(src)])
    with pytest.raises(compare.UsageError, match="cannot read argument '--bogus=1'"):
        compare.main(["--report", str(data), "--bogus=1"])


def plot_available():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def test_reach_probe_tells_whole_chains_from_lucky_answers(tok, monkeypatch):
    """Three level-7 problems: every sample a whole correct chain; one sample with the right answer after a wrong
    chain; every sample wrong."""
    problems = [level_problems(7)[i] for i in range(3)]
    end = tok.token_to_id("<|im_end|>")
    lucky = "\n".join(["1+1=3, 6 left"] * 7) + f"\n\\boxed{{{problems[1]['answer']}}}"
    wrong = lambda p: f"\\boxed{{{(int(p['answer']) + 1) % 100}}}"

    def sample(model, prompt_list, G, max_new_tokens, **kw):
        texts = [[problems[0]["solution"]] * G, [lucky] + [wrong(problems[1])] * (G - 1), [wrong(problems[2])] * G]
        return sampled([tok.encode(t).ids + [end] for ts in texts for t in ts], len(prompt_list), G)
    ghpo.hard_levels, probes.pass_k = (7,), 4
    monkeypatch.setattr(rollout, "sample_groups", sample)
    model = types.SimpleNamespace(lm_head=torch.nn.Linear(1, 1))
    out = probes.reach_probe(model, tok, {"L1": [], "L7": problems}, [])
    assert out["k"] == 4 and out["pass"] == {"L7": 2 / 3, "hard": 2 / 3} and out["chain"]["L7"] == 1 / 3
    assert out["right_samples"]["L7"] == 5 / 12 and out["chain_samples"]["L7"] == 4 / 12
    assert ghpo.group_size == 8 or ghpo.group_size != 4  # restored after the probe
    assert probes.whole_chain(problems[0]["solution"], problems[0]) and not probes.whole_chain(lucky, problems[1])


def test_the_committed_map_data_gives_the_documented_numbers():
    """docs/hints.md's tables of every base, recomputed from docs/hints_data by compare.py's own report: the data
    and the command that the page says reproduce it do."""
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "hints_data", "slip0.9")
    opts = dict(compare.MAP_OPTIONS, reach="0.5")
    t = compare.base_table(folder, opts)
    assert t["info"]["slip_rate"] == 0.9 and len(t["rows"]) == 15
    points = lambda pair, endpoint: tuple(round(100 * x, 1) for x in t["pairs"][pair][endpoint])
    assert points("ghpo - resample", "hard") == (55.0, 46.0, 63.4)
    assert points("ghpo - grpo_g12", "hard") == (55.1, 46.3, 63.4)
    assert points("ghpo - dapo", "hard") == (54.9, 46.0, 63.2)
    assert points("ghpo - resample", "easy") == (-7.4, -10.6, -4.4)
    assert points("ghpo - resample", "hard@tokens+prompt") == (51.7, 44.5, 58.5)
    t = compare.base_table(folder.replace("slip0.9", "slip0.8"), opts)
    assert t["info"]["slip_rate"] == 0.8 and len(t["rows"]) == 15
    assert points("ghpo - resample", "hard") == (60.6, 55.4, 65.6)
    assert points("ghpo - grpo_g10", "hard") == (61.6, 56.1, 66.7)
    read = lambda pair, endpoint: compare.reading(t["pairs"][pair][endpoint], 0.05, pair.split(" - ")[1])
    t = compare.base_table(folder.replace("slip0.9", "slip0.7"), opts)
    assert t["info"]["slip_rate"] == 0.7 and len(t["rows"]) == 15
    assert points("ghpo - resample", "hard") == (6.7, 1.4, 12.0) and read("ghpo - resample", "hard") == \
        "the hint carries the lead"
    assert points("ghpo - resample", "hard@tokens+prompt") == (21.3, 6.2, 36.9)
    assert points("ghpo - grpo_g10", "hard") == (53.7, 41.7, 63.3)
    assert points("ghpo - dapo", "hard") == (30.7, 15.7, 44.0)
    t = compare.base_table(folder.replace("slip0.9", "slip0.6"), opts)
    assert t["info"]["slip_rate"] == 0.6 and len(t["rows"]) == 15
    assert points("ghpo - resample", "hard") == (0.7, -5.3, 7.3) and read("ghpo - resample", "hard") == "inconclusive"
    assert points("ghpo - grpo_g10", "hard") == (20.8, 15.7, 26.2)
    assert points("ghpo - dapo", "hard") == (30.4, 24.7, 36.3)
    assert points("ghpo - resample", "easy") == (2.0, -0.7, 5.0)
    t = compare.base_table(folder.replace("slip0.9", "slip0.75"), opts)  # the fresh base: ghpo and resample alone
    assert t["info"]["slip_rate"] == 0.75 and len(t["rows"]) == 6 and list(t["pairs"]) == ["ghpo - resample"]
    assert round(t["info"]["chain_k"], 3) == 0.013 and round(t["info"]["pass_k"], 3) == 0.093
    assert points("ghpo - resample", "hard") == (34.6, 23.8, 47.3)
    t = compare.base_table(folder.replace("slip0.9", "slip0.7-b1"), opts)  # base seed 1: the prediction's test
    assert t["info"]["slip_rate"] == 0.7 and len(t["rows"]) == 6 and round(t["info"]["pass_k"], 3) == 0.247
    assert points("ghpo - resample", "hard") == (7.6, -0.3, 14.7) and read("ghpo - resample", "hard") == "inconclusive"


@pytest.mark.parametrize("interval, want", [
    ((0.55, 0.46, 0.63), "the hint carries the lead"), ((0.067, 0.014, 0.12), "the hint carries the lead"),
    ((0.02, 0.005, 0.04), "a lead under the margin"), ((0.01, -0.03, 0.04), "resample suffices"),
    ((0.02, -0.06, 0.10), "inconclusive"), ((-0.2, -0.3, -0.1), "resample leads"),
    ((-0.02, -0.07, 0.0), "inconclusive")])
def test_the_criterion_reads_an_interval_the_same_way_for_both_answers(interval, want):
    assert compare.reading(interval, 0.05, "resample") == want
