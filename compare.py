"""
Run several methods and RL seeds of ghpo.py, from one base model or from several, then print a table like the paper's
(per-level accuracy before and after RL, per method, mean over runs), the hard accuracy of every run with its spread,
the per-base difference between the first two methods, and the mechanism behind it (hard groups with no correct
unhinted sample, hinted groups a hint rescued); then, per method, hard and easy accuracy (mean +- sd), the compute
each run generated (completions and tokens, all-wrong groups' regenerations included) and its wall time, and every
run's figures. With matplotlib installed (optional, not a requirement of ghpo) compare.png plots hard accuracy
against cumulative generated tokens (points: the evaluations before, every --eval_interval steps and after RL),
and the accuracy reward, regenerated fraction and grad norm over steps, one line per method (means over runs).

    python compare.py --config small.py --methods=ghpo,grpo --seeds=0,1,2 [--base_seeds=0,1,2] [--jobs=2]
                      [--threads=N] [--out_dir=out/compare] [any --key=value of ghpo.py, probes.py, data/demo_base.py]
    python compare.py --config small.py --methods="ghpo,grpo,g16=grpo:group_size=16,questa=ghpo:hint_schedule=(1,.5)"

A method is METHOD, or METHOD:KEY=VALUE[:KEY=VALUE...] with settings of ghpo.py for that method alone, named in the
table NAME if written NAME=METHOD:..., else METHOD-KEY=VALUE-... (commas inside parentheses belong to a value). Each
run writes <out_dir>/<name>-s<seed>/ (with --base_seeds: <out_dir>/b<base_seed>/<name>-s<seed>/); an existing
summary.json is reused, so an interrupted comparison continues where it stopped. Without --base_seeds every run starts
from the config's init_from (the shipped base model for small.py); --base_seeds makes each of those base models first
(`python -m data.demo_base --base_seed=S`, kept in its cache; a base already there is not made again). probes.py
probes each base model once (<out_dir>/[b<base_seed>/]probes/; --probe_per_level=0 skips it). A --key=value goes to
every command that has that setting (hint_in_answer, eval_per_level, ... to both ghpo.py and the base's command).
--jobs runs that many processes at once, each with --threads torch threads (default: cores / jobs); a base model is
made alone, with every job's threads, before the runs that start from it.

The map over several bases' comparisons (each folder one base, its runs <name>-s<seed>/), read from their compact
form: --export writes it (per run metrics.jsonl and summary.json; the base's probes/probes.json and
base/made.json), --report reads it (per base, method and seed:
hard and easy accuracy after RL, hard accuracy at equal compute on each axis (generated tokens, + prompt tokens, train
tokens, completions, sampling + update seconds; each run read at the smallest final compute among the base's runs,
linear between its evaluations), compute to reach --reach hard accuracy; per pair A:B of --pairs the difference
A - B with a 95% bootstrap interval paired over seeds and problems; then the map, --map=PNG its figure), --match
applies the pilot rule for the compute-matched GRPO, G = round(G_grpo x GHPO's generated tokens / GRPO's):

    python compare.py --export out/map/slip0.9 docs/hints_data/slip0.9
    python compare.py --report docs/hints_data/slip0.6,docs/hints_data/slip0.9 [--pairs=ghpo:resample,ghpo:grpo_g*]
                      [--reach=0.75] [--map=docs/hints_map.png] [--resamples=2000] [--boot_seed=0]
    python compare.py --match out/map/slip0.9/ghpo-s0 out/map/slip0.9/grpo-s0
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

import checkpoint
import ghpo
import probes
from configurator import UsageError, check_type, parse_value
from data import demo_base

ROOT = os.path.dirname(os.path.abspath(__file__))


def run(cmd, folder, threads):
    """One command (ghpo.py, probes.py or -m data.demo_base, then its arguments) with --threads, its output in
    folder/log.txt; skipped when folder/summary.json or folder/probes.json says it has finished. A ghpo.py run that
    did not finish resumes from its newest checkpoint, or starts again with nothing of the old one left."""
    if any(os.path.isfile(os.path.join(folder, name)) for name in ("summary.json", "probes.json")):
        return
    os.makedirs(folder, exist_ok=True)
    if cmd[0] == "ghpo.py":  # an unfinished run: on from its checkpoint, or (none yet) again from the start
        cmd = cmd + ["--resume=True" if checkpoint.newest_first(folder) else "--overwrite=True"]
    cmd = [sys.executable, *(os.path.join(ROOT, c) if c.endswith(".py") and i == 0 else c for i, c in enumerate(cmd)),
           f"--threads={threads}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    with open(os.path.join(folder, "log.txt"), "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if code:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {code}; see {folder}/log.txt")


def mean(xs):
    return sum(xs) / len(xs)


def sd(xs):
    """Sample standard deviation (0 for a single value)."""
    return math.sqrt(sum((x - mean(xs)) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0


def run_means(folder, keys=("hard_unsolved", "hint_rescued")):
    """Means over a run's steps of the mechanism metrics in its metrics.jsonl (None where a metric never applied)."""
    lines = [json.loads(l) for l in open(os.path.join(folder, "metrics.jsonl")) if '"reward"' in l]
    out = {}
    for k in keys:
        xs = [l[k] for l in lines if l.get(k) is not None]
        out[k] = mean(xs) if xs else None
    return out


def run_compute(folder):
    """A run's compute from its metrics.jsonl: completions and tokens generated over its steps (None where the log
    predates these keys), its training seconds (the steps' sum, no evaluation) and its hard-accuracy curve
    [(cumulative generated tokens, hard accuracy)] at the evaluations inside the run ({"step", "eval"} lines)."""
    lines = [json.loads(l) for l in open(os.path.join(folder, "metrics.jsonl"))]
    steps = [l for l in lines if "reward" in l]
    has = steps and all("generated_tokens" in l for l in steps)
    cum, curve = 0, []
    for l in lines:
        if "reward" in l:
            cum += l.get("generated_tokens", 0)
        elif "eval" in l and "hard" in l["eval"]:
            curve.append((cum, l["eval"]["hard"]))
    return {"completions": sum(l["generated_completions"] for l in steps) if has else None,
            "tokens": cum if has else None, "train_s": sum(l.get("step_s", 0) for l in steps), "curve": curve}


class Spec(NamedTuple):
    """A method of the comparison: its name in the table and folders, ghpo.py's method, and its own settings."""
    name: str
    method: str
    overrides: list           # --key=value arguments of ghpo.py for this method only


def method_specs(text):
    """--methods as Specs: comma-separated (a comma inside parentheses belongs to a value), each METHOD,
    METHOD:KEY=VALUE[:KEY=VALUE...] or NAME=METHOD[:KEY=VALUE...]; every key a setting of ghpo.py, type-checked."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(text + ","):
        depth += (c == "(") - (c == ")")
        if c == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    specs = []
    for item in filter(None, items):
        head, *pairs = item.split(":")
        name, method = head.split("=", 1) if "=" in head else (None, head)
        if method not in ghpo.METHODS:
            raise UsageError(f"--methods: {item!r}: method must be one of {', '.join(ghpo.METHODS)}, got {method!r}")
        overrides = []
        for pair in pairs:
            key, value = pair.split("=", 1) if "=" in pair else (pair, None)
            if key not in ghpo.config_keys or key in ("method", "seed", "out_dir") or value is None:
                raise UsageError(f"--methods: {item!r}: {pair!r} is not KEY=VALUE with KEY a setting of ghpo.py "
                                 f"(not method, seed or out_dir)")
            check_type(key, parse_value(value, getattr(ghpo, key)), getattr(ghpo, key), f"--methods {item!r}")
            overrides.append(f"--{key}={value}")
        auto = "-".join([method] + [o[2:] for o in overrides])
        specs.append(Spec(name or re.sub(r"[^A-Za-z0-9_.=-]", "_", auto), method, overrides))
    names = [s.name for s in specs]
    if not specs or len(set(names)) < len(names):
        raise UsageError(f"--methods: give one or more methods, each with its own name; got {names}")
    return specs


def summarize(results, methods):
    """results: {(base, method, seed): {"eval_before": {...}, "eval_after": {...}, "mechanism": {...}}}.
    Returns the numbers the report prints: per-method means over all runs, hard accuracy per base and method, and
    the per-base difference of the first two methods' mean hard accuracy."""
    bases = sorted({b for b, _, _ in results})
    splits = list(next(iter(results.values()))["eval_after"])
    out = {"splits": splits, "bases": bases, "after": {}, "hard": {}, "hard_all": {}, "mechanism": {}, "diff": {}}
    for m in methods:
        rs = [v for (b, mm, s), v in sorted(results.items()) if mm == m]
        out["after"][m] = {s: mean([r["eval_after"][s] for r in rs]) for s in splits}
        out["hard_all"][m] = [r["eval_after"]["hard"] for r in rs]
        out["hard"][m] = {b: [v["eval_after"]["hard"] for (bb, mm, s), v in sorted(results.items())
                              if bb == b and mm == m] for b in bases}
        out["mechanism"][m] = {}
        for k in ("hard_unsolved", "hint_rescued"):
            xs = [r["mechanism"][k] for r in rs if r["mechanism"].get(k) is not None]
            out["mechanism"][m][k] = mean(xs) if xs else None
    if len(methods) > 1:
        a, b = methods[:2]
        out["diff"] = {base: mean(out["hard"][a][base]) - mean(out["hard"][b][base]) for base in bases}
    return out


def report(results, methods, base_before):
    """Print the comparison; base_before: {base: the base model's eval_before}."""
    s = summarize(results, methods)
    n = len(s["hard_all"][methods[0]])
    print(f"greedy accuracy without hints after RL, mean over {n} runs per method "
          f"(base models {s['bases']}); base = the mean of the starting models")
    w = max([14] + [len(m) + 1 for m in methods])
    print(f"{'':>{w}}" + "".join(f"{c:>8}" for c in s["splits"]))
    before = {c: mean([base_before[b][c] for b in s["bases"]]) for c in s["splits"]}
    print(f"{'base':>{w}}" + "".join(f"{before[c]:>8.3f}" for c in s["splits"]))
    for m in methods:
        print(f"{m:>{w}}" + "".join(f"{s['after'][m][c]:>8.3f}" for c in s["splits"]))
    print("hard accuracy per base model (its own hard accuracy before RL), per RL seed, and the mean")
    for b in s["bases"]:
        cells = [f"{m} {' '.join(f'{x:.3f}' for x in s['hard'][m][b])} (mean {mean(s['hard'][m][b]):.3f})"
                 for m in methods]
        diff = f" | {methods[0]} - {methods[1]} {100 * s['diff'][b]:+.1f} points" if s["diff"] else ""
        print(f"  base {b} ({base_before[b]['hard']:.3f}): " + "; ".join(cells) + diff)
    for m in methods:
        xs = s["hard_all"][m]
        mech = s["mechanism"][m]
        extra = "".join(f", {k} {v:.3f}" for k, v in mech.items() if v is not None)
        print(f"{m}: hard {mean(xs):.3f} +- {sd(xs):.3f} (sd over {len(xs)} runs, min {min(xs):.3f}, "
              f"max {max(xs):.3f}){extra}")
    if s["diff"]:
        d = list(s["diff"].values())
        print(f"{methods[0]} - {methods[1]} on hard: {100 * mean(d):+.1f} points on average over {len(d)} base "
              f"model(s); per base {', '.join(f'{100 * x:+.1f}' for x in d)}; min {100 * min(d):+.1f}")
    return s


def compute_summary(results, methods):
    """Per method, each run's figures in seed order (bases in turn): hard, easy, completions and tokens generated,
    wall and training seconds ({name: {figure: [one per run]}}); results as summarize's, with "compute" and
    "wall_s" per run."""
    keys = ("hard", "easy", "completions", "tokens", "wall_s", "train_s")
    out = {}
    for m in methods:
        rs = [v for (b, mm, s), v in sorted(results.items(), key=lambda kv: (kv[0][2], str(kv[0][0])))
              if mm == m]
        out[m] = {k: [r["eval_after"][k] if k in ("hard", "easy") else r["wall_s"] if k == "wall_s"
                      else r["compute"][k] for r in rs] for k in keys}
    return out


def report_compute(c, methods):
    """Print compute_summary's table (mean +- sd over runs) and every run's figures."""
    w = max([14] + [len(m) + 1 for m in methods])
    first = c[methods[0]]["tokens"]
    print(f"per method, mean +- sd over runs: greedy accuracy after RL (no hints); compute generated per run "
          f"(every sampled completion, all-wrong groups' regenerations included; tokens x {methods[0]}'s); wall "
          f"time per run (training steps alone)")
    print(f"{'':>{w}}{'hard':>16}{'easy':>16}{'completions':>18}{'tokens':>22}{'x':>6}{'wall s':>14}{'train s':>9}")
    fmt = lambda xs, d: f"{mean(xs):.{d}f} +- {sd(xs):.{d}f}" if None not in xs else "-"
    for m in methods:
        f = c[m]
        ratio = f"{mean(f['tokens']) / mean(first):.2f}" if None not in f["tokens"] + first else "-"
        print(f"{m:>{w}}{fmt(f['hard'], 3):>16}{fmt(f['easy'], 3):>16}{fmt(f['completions'], 0):>18}"
              f"{fmt(f['tokens'], 0):>22}{ratio:>6}{fmt(f['wall_s'], 0):>14}{mean(f['train_s']):>9.0f}")
    print("every run (seed order): hard | easy | completions | tokens | wall s")
    for m in methods:
        f = c[m]
        cells = [f"{h:.3f} {e:.3f} " + " ".join("-" if x is None else f"{x:.0f}" for x in (n, t, ws))
                 for h, e, n, t, ws in zip(f["hard"], f["easy"], f["completions"], f["tokens"], f["wall_s"])]
        print(f"  {m}: " + " | ".join(cells))


def split_args(argv):
    """compare.py's own options, and the other arguments sorted by the command whose setting each is: {"ghpo",
    "probes", "base"}: lists of arguments (a key two commands have goes to both; --config to ghpo.py and probes.py)."""
    own = {"methods": "ghpo,grpo", "seeds": "0,1,2", "base_seeds": "", "jobs": "1", "out_dir": "out/compare",
           "threads": "0"}
    passed = {"ghpo": [], "probes": [], "base": []}
    args = list(argv)
    while args:
        arg = args.pop(0)
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if arg == "--config":  # its file name is the next argument
            arg = f"--config={args.pop(0) if args else ''}"
            key = "config"
        if key in own and "=" in arg:
            own[key] = arg.split("=", 1)[1]
            continue
        owners = [name for name, keys in (("ghpo", ghpo.config_keys + ["config"]),
                                          ("probes", ghpo.config_keys + probes.config_keys + ["config"]),
                                          ("base", demo_base.config_keys)) if key in keys]
        if not owners or "=" not in arg:
            raise UsageError(f"cannot read argument {arg!r}: not a setting of ghpo.py, probes.py or data/demo_base.py "
                             f"(python compare.py --help)")
        for name in owners:
            passed[name].append(arg)
    try:
        opts = dict(seeds=[int(x) for x in own["seeds"].split(",")],
                    base_seeds=[int(x) for x in own["base_seeds"].split(",")] if own["base_seeds"] else None,
                    jobs=int(own["jobs"]), out_dir=own["out_dir"], threads=int(own["threads"]))
    except ValueError as e:
        raise UsageError(f"--seeds, --base_seeds, --jobs and --threads take integers (comma-separated): {e}") from None
    return opts | {"methods": method_specs(own["methods"])}, passed



def main(argv):
    if "--help" in argv or "-h" in argv:
        return print(__doc__.strip())
    if argv and argv[0].split("=")[0] in ("--report", "--export", "--match"):
        return tool_main(argv)
    opts, passed = split_args(argv)
    methods, out_dir, jobs = opts["methods"], opts["out_dir"], opts["jobs"]
    threads = opts["threads"] or max(1, (os.cpu_count() or 1) // jobs)
    bases = opts["base_seeds"] if opts["base_seeds"] is not None else [None]  # None: the config's own init_from
    base_dir = {b: os.path.join(out_dir, f"b{b}") if b is not None else out_dir for b in bases}
    init_from = {None: []}
    for b in opts["base_seeds"] or []:  # make each base model first (alone: it is the long part), or find it made
        demo_base.configure(passed["base"] + [f"--base_seed={b}"])
        folder = demo_base.base_folder()
        if not demo_base.is_trained(folder):
            run(["-m", "data.demo_base", *passed["base"], f"--base_seed={b}"], os.path.join(base_dir[b], "base"),
                threads * jobs)
        init_from[b] = [f"--init_from={folder}"]
    spec = {m.name: m for m in methods}
    methods = list(spec)  # from here on, the methods' names
    runs = [(b, m, s, os.path.join(base_dir[b], f"{m}-s{s}"))  # seed-major: an interrupted comparison stays paired
            for b in bases for s in opts["seeds"] for m in methods]
    jobs_list = [(["ghpo.py", *passed["ghpo"], *init_from[b], f"--method={spec[m].method}", *spec[m].overrides,
                   f"--seed={s}", f"--out_dir={d}"], d) for b, m, s, d in runs]
    if "--probe_per_level=0" not in passed["probes"]:  # one probe of each base model, beside the runs
        jobs_list += [(["probes.py", *passed["probes"], *init_from[b], f"--out_dir={base_dir[b]}/probes"],
                       os.path.join(base_dir[b], "probes")) for b in bases]
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda job: run(job[0], job[1], threads), jobs_list))

    summaries = {r: json.load(open(os.path.join(r[3], "summary.json"))) for r in runs}
    results = {r[:3]: {"eval_before": summaries[r]["eval_before"], "eval_after": summaries[r]["eval_after"],
                       "mechanism": run_means(r[3]), "compute": run_compute(r[3]),
                       "wall_s": summaries[r].get("wall_seconds")} for r in runs}  # keyed (base, method, seed)
    for r in runs:  # the hard-accuracy curve from the evaluation before RL (no tokens yet) to the one after
        c = results[r[:3]]["compute"]
        ends = [(0, summaries[r]["eval_before"]["hard"])], [(c["tokens"], summaries[r]["eval_after"]["hard"])]
        c["curve"] = ends[0] + c["curve"] + ends[1] if c["tokens"] is not None else []
    firsts = {b: next(r for r in runs if r[0] == b) for b in bases}
    base_before = {b: summaries[r]["eval_before"] for b, r in firsts.items()}
    s = report(results, methods, base_before)
    compute = compute_summary(results, methods)
    report_compute(compute, methods)
    probed = {b: os.path.join(base_dir[b], "probes", "probes.json") for b in bases}
    with open(os.path.join(out_dir, "compare.json"), "w") as f:
        json.dump({"base": {str(b): v for b, v in base_before.items()}, "after": s["after"],
                   "hard": {m: {str(b): v for b, v in s["hard"][m].items()} for m in methods},
                   "diff": {str(b): v for b, v in s["diff"].items()}, "mechanism": s["mechanism"],
                   "probes": {str(b): {k: v for k, v in json.load(open(p)).items() if k in ("hint_probe", "pass_probe")}
                              for b, p in probed.items() if os.path.isfile(p)},
                   "compute": compute, "settings": {m: spec[m].overrides for m in methods},
                   "runs": {os.path.relpath(r[3], out_dir): summaries[r]["eval_after"] | {
                       k: results[r[:3]]["compute"][k] for k in ("completions", "tokens", "train_s", "curve")}
                       | {"wall_s": results[r[:3]]["wall_s"]} for r in runs}}, f, indent=1)
    plotted = plot(runs, results, methods, out_dir)
    print(f"done -> {out_dir}: compare.json{', compare.png' if plotted else ''}, and per run (<method>-s<seed>/) its "
          f"summary.json, metrics.jsonl, model/, last checkpoint and log.txt")
    return s | {"compute": compute}


def mean_curve(curves):
    """The pointwise mean of runs' curves [(x, y), ...] over the points all of them have."""
    n = min(len(c) for c in curves)
    return [mean([c[i][0] for c in curves]) for i in range(n)], [mean([c[i][1] for c in curves]) for i in range(n)]


def plot(runs, results, methods, out_dir):
    """compare.png: hard accuracy against cumulative generated tokens, then the accuracy reward, the fraction of
    groups sampled again (any stage) and the grad norm over steps; one line per method, the mean over its runs."""
    try:
        import matplotlib  # optional: only for this plot (not a requirement of ghpo)
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib for one)")
        return False
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    for m in methods:
        mine = [r for r in runs if r[1] == m]
        curves = [results[r[:3]]["compute"]["curve"] for r in mine]
        if all(curves):
            x, y = mean_curve(curves)
            sds = [sd([c[i][1] for c in curves]) for i in range(len(x))]
            axes[0, 0].errorbar([t / 1e6 for t in x], y, yerr=sds, marker="o", capsize=3, label=m)
        lines = [[json.loads(l) for l in open(os.path.join(r[3], "metrics.jsonl")) if '"reward"' in l] for r in mine]
        for ax, value in ((axes[0, 1], lambda l: l["accuracy"]), (axes[1, 0], lambda l: sum(l["hinted"].values())),
                          (axes[1, 1], lambda l: l["grad_norm"])):
            curves = [[(l["step"], value(l)) for l in ls] for ls in lines]
            ax.plot(*mean_curve(curves), label=m, alpha=0.8)
    titles = ("hard accuracy (greedy, no hints) against generated tokens; mean +- sd over runs",
              "accuracy reward of the final groups", "fraction of groups sampled again (hinted or not)",
              "grad norm (pre-clip)")
    for ax, title, xlabel in zip(axes.flat, titles, ("cumulative generated tokens (millions)", "step", "step",
                                                     "step")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        if ax.get_legend_handles_labels()[0]:  # runs logged before generated_tokens have no curve
            ax.legend(fontsize=7)
    fig.savefig(os.path.join(out_dir, "compare.png"), dpi=100, bbox_inches="tight")
    return True


# -----------------------------------------------------------------------------
# the map: several bases' comparisons, read from their compact committed form (export), at equal compute, paired


# compute axes of the equal-compute reading: name -> a step line's cost on it (None: the line predates the key)
AXES = {"tokens": lambda l: l.get("generated_tokens"),
        "tokens+prompt": lambda l: l["generated_tokens"] + l["prompt_tokens"] if "prompt_tokens" in l else None,
        "train_tokens": lambda l: l.get("train_tokens"), "completions": lambda l: l.get("generated_completions"),
        "seconds": lambda l: l["sample_s"] + l["train_s"] if "sample_s" in l else None}
MAP_OPTIONS = {"pairs": "ghpo:resample,ghpo:grpo_g*,ghpo:dapo",  # A:B, each A - B; a name ending in * is the one
               # method of a base whose name starts so (the compute-matched GRPO's G differs from base to base)
               "reach": "0.75",        # tokens to reach this hard accuracy (linear between evaluations; None: never)
               "map": "",              # --report: the map figure's png ("": none)
               "resamples": "2000", "boot_seed": "0",  # the paired bootstrap: resamples and its fixed seed
               "margin": "0.05"}       # the criterion's margin (docs/hints.md): inside (-margin, +margin) is "suffices"


class Point(NamedTuple):
    """An evaluation of a run: cumulative compute on each axis, hard and easy accuracy, per-problem results."""
    x: dict                   # {axis: cumulative compute up to this evaluation (None: not logged)}
    hard: float
    easy: float
    items: dict | None        # {"hard": [0/1 per problem], "easy": [...]}, hard and easy levels in order


def split_items(items, cfg):
    """{"hard": [...], "easy": [...]}: a summary's or eval line's per-split strings, levels in order (None: absent)."""
    out = {}
    for split, default in (("hard", ghpo.hard_levels), ("easy", ghpo.easy_levels)):
        names = [f"L{lv}" for lv in cfg.get(f"{split}_levels", default)]
        if not items or not all(n in items for n in names):
            return None
        out[split] = [int(c) for n in names for c in items[n]]
    return out


def read_run(folder):
    """A run folder's (metrics.jsonl, summary.json) evaluations as Points: before RL (no compute), every evaluation
    inside the run, after RL (its whole compute)."""
    summary = json.load(open(os.path.join(folder, "summary.json")))
    cfg = summary.get("config", {})
    cum = {a: 0 for a in AXES}
    points = [Point(dict(cum), summary["eval_before"]["hard"], summary["eval_before"]["easy"],
                    split_items(summary.get("eval_before_items"), cfg))]
    for line in map(json.loads, open(os.path.join(folder, "metrics.jsonl"))):
        if "reward" in line:
            for a, cost in AXES.items():
                cum[a] = None if cum[a] is None or cost(line) is None else cum[a] + cost(line)
        elif "eval" in line:
            points.append(Point(dict(cum), line["eval"]["hard"], line["eval"]["easy"],
                                split_items(line.get("eval_items"), cfg)))
    points.append(Point(dict(cum), summary["eval_after"]["hard"], summary["eval_after"]["easy"],
                        split_items(summary.get("eval_after_items"), cfg)))
    return points


def at_compute(points, axis, x):
    """(hard accuracy, per-problem hard results) of a run at compute x on an axis, linear between its evaluations;
    the results are fractions between two evaluations (None without them)."""
    for a, b in zip(points, points[1:]):
        if a.x[axis] <= x <= b.x[axis] and b.x[axis] > a.x[axis]:
            w = (x - a.x[axis]) / (b.x[axis] - a.x[axis])
            items = [(1 - w) * u + w * v for u, v in zip(a.items["hard"], b.items["hard"])] \
                if a.items and b.items else None
            return (1 - w) * a.hard + w * b.hard, items
    raise ValueError(f"compute {x} is outside the run's {axis} curve")


def reach_compute(points, axis, level):
    """The compute on an axis at which the hard accuracy first reaches level (linear between evaluations); None
    if it never does."""
    if points[0].hard >= level:
        return 0.0
    for a, b in zip(points, points[1:]):
        if a.hard < level <= b.hard:
            return a.x[axis] + (level - a.hard) / (b.hard - a.hard) * (b.x[axis] - a.x[axis])
    return None


def paired_bootstrap(a, b, resamples, seed):
    """a, b: (seeds, problems) per-problem results of two methods, paired by seed and problem. The mean difference
    a - b and its 95% percentile interval, resampling seeds and problems (crossed: one draw of problems for every
    seed) with replacement, from a generator with a fixed seed."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)  # (S, N)
    rng = np.random.default_rng(seed)
    stats = [d[np.ix_(rng.integers(0, d.shape[0], d.shape[0]), rng.integers(0, d.shape[1], d.shape[1]))].mean()
             for _ in range(resamples)]
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def base_runs(folder):
    """{(method name, seed): Points} of a comparison folder's runs (<name>-s<seed>/ with a summary.json)."""
    runs = {}
    for name in sorted(os.listdir(folder)):
        m = re.fullmatch(r"(.+)-s(\d+)", name)
        if m and os.path.isfile(os.path.join(folder, name, "summary.json")):
            runs[(m[1], int(m[2]))] = read_run(os.path.join(folder, name))
    if not runs:
        raise UsageError(f"{folder}: no run folders (<method>-s<seed>/summary.json)")
    return runs


def base_info(folder):
    """The base's slip rate (its made.json) and reach probe (its probes.json), from base/made.json and
    probes/probes.json (None where absent)."""
    made, probed = os.path.join(folder, "base", "made.json"), os.path.join(folder, "probes", "probes.json")
    slip = json.load(open(made))["settings"].get("base_slip_rate") if os.path.isfile(made) else None
    probe = json.load(open(probed)) if os.path.isfile(probed) else {}
    reach = probe.get("reach_probe", {})
    hint = reach.get("hint", {}).get("pass", {})
    return {"slip_rate": slip, "pass_k": reach.get("pass", {}).get("hard"),
            "chain_k": reach.get("chain", {}).get("hard"), "hint_pass": hint.get("hard"), "k": reach.get("k")}


def pick(name, methods):
    """A pair's side among a base's methods: the name itself, or with a trailing * the one method it begins."""
    found = [m for m in methods if (m.startswith(name[:-1]) if name.endswith("*") else m == name)]
    return found[0] if len(found) == 1 else None


def base_table(folder, opts):
    """One base's numbers: per run (method, seed) hard and easy after RL, hard at equal compute on each axis (read
    at the smallest final compute among its runs), compute to reach opts' hard accuracy; per pair the paired
    differences with their bootstrap intervals."""
    runs = base_runs(folder)
    finals = {a: [p[-1].x[a] for p in runs.values()] for a in AXES}
    equal = {a: min(xs) if None not in xs and min(xs) > 0 else None for a, xs in finals.items()}
    rows = {}
    for key, points in runs.items():
        row = {"hard": points[-1].hard, "easy": points[-1].easy}
        for a, x in equal.items():
            row[f"hard@{a}"] = at_compute(points, a, x)[0] if x is not None else None
            row[f"reach@{a}"] = reach_compute(points, a, float(opts["reach"])) if x is not None else None
        rows[key] = row
    methods = sorted({m for m, _ in runs})
    pairs = {}
    for pair in opts["pairs"].split(","):
        a, b = (pick(n, methods) for n in pair.split(":"))
        seeds = sorted({s for m, s in runs if m == a} & {s for m, s in runs if m == b}) if a and b else []
        if not seeds:
            continue
        out = {}
        for endpoint in ["hard", "easy"] + [f"hard@{x}" for x in AXES]:
            def items(m, s):
                points = runs[(m, s)]
                if endpoint in ("hard", "easy"):
                    return points[-1].items and points[-1].items[endpoint]
                axis = endpoint.split("@")[1]
                return at_compute(points, axis, equal[axis])[1] if equal[axis] is not None else None
            ia, ib = [[items(m, s) for s in seeds] for m in (a, b)]
            out[endpoint] = paired_bootstrap(ia, ib, int(opts["resamples"]), int(opts["boot_seed"])) \
                if all(x is not None for x in ia + ib) else None
        pairs[f"{a} - {b}"] = out | {"seeds": seeds, "pair": pair}
    return {"folder": folder, "info": base_info(folder), "equal": equal, "reach": float(opts["reach"]), "rows": rows,
            "pairs": pairs}


def interval(v):
    """A paired_bootstrap result in points: +d [lo, hi] ("-": none)."""
    return "-" if v is None else f"{100 * v[0]:+.1f} [{100 * v[1]:+.1f}, {100 * v[2]:+.1f}]"


def reading(v, margin, other):
    """The design's criterion (docs/hints.md) applied to a GHPO - X interval, the same for both answers."""
    if v is None:
        return "-"
    lo, hi = v[1], v[2]
    if 0 < lo and hi < margin:
        return "a lead under the margin"
    if lo > 0:
        return "the hint carries the lead"
    if -margin < lo and hi < margin:
        return f"{other} suffices"
    return f"{other} leads" if hi < 0 else "inconclusive"


def print_base(t):
    """Print base_table's numbers: every run, each method's mean, and each pair's differences in points."""
    f3 = lambda v: "-" if v is None else f"{v:.3f}"
    info = t["info"]
    print(f"base {t['folder']}: slip rate {info['slip_rate']}; before RL, hard levels: pass@{info['k']} "
          f"{f3(info['pass_k'])}, whole chains {f3(info['chain_k'])}, pass@G with the largest hint "
          f"{f3(info['hint_pass'])}")
    print("  hard and easy accuracy after RL; hard at equal compute on each axis, read at the smallest final among "
          "the runs (" + ", ".join(f"{a} {'-' if x is None else f'{x:,.0f}'}" for a, x in t["equal"].items())
          + f"); compute to reach hard {t['reach']} (- never)")
    cols = ["hard", "easy"] + [f"hard@{a}" for a in AXES] + ["reach@tokens", "reach@tokens+prompt"]
    cell = lambda c, v: "-" if v is None else f"{v:.3f}" if c[:5] != "reach" else f"{v:,.0f}"
    w = max([18] + [len(m) + 6 for m, _ in t["rows"]])
    short = lambda c: c.replace("hard@", "@").replace("reach@", "to ").replace("tokens+prompt", "tok+prompt")
    print(f"  {'run':>{w}}" + "".join(f"{short(c):>14}" for c in cols))
    by_method = {}
    for (m, s), row in sorted(t["rows"].items()):
        by_method.setdefault(m, []).append(row)
        print(f"  {f'{m}-s{s}':>{w}}" + "".join(f"{cell(c, row[c]):>14}" for c in cols))
    for m, rows in by_method.items():
        means = [None if None in xs else mean(xs) for xs in ([r[c] for r in rows] for c in cols)]
        print(f"  {f'{m} mean':>{w}}" + "".join(f"{cell(c, v):>14}" for c, v in zip(cols, means)))
    if t["pairs"]:
        names = list(t["pairs"])
        print("  differences in points, 95% paired bootstrap over seeds and problems (seeds "
              + "; ".join(f"{n}: {t['pairs'][n]['seeds']}" for n in names) + ")")
        print(f"  {'':>{w}}" + "".join(f"{n:>24}" for n in names))
        for e in ["hard", "easy"] + [f"hard@{a}" for a in AXES]:
            print(f"  {e:>{w}}" + "".join(f"{interval(t['pairs'][n][e]):>24}" for n in names))


def map_report(folders, opts):
    """--report: every base's table, then the map (GHPO's lead per pair against the base's slip rate, each interval
    read by the criterion)."""
    tables = [base_table(f, opts) for f in folders]
    for t in tables:
        print_base(t)
    margin = float(opts["margin"])
    print(f"the map: per pair, hard after RL | at equal generated + prompt tokens (points, 95% interval; the criterion "
          f"with a margin of {100 * margin:g} points), by slip rate")
    for t in sorted(tables, key=lambda t: (t["info"]["slip_rate"] is None, t["info"]["slip_rate"] or 0)):
        for name, out in t["pairs"].items():
            x = name.split(" - ")[1]
            print(f"  slip {t['info']['slip_rate']} {name}: {interval(out['hard'])} {reading(out['hard'], margin, x)} "
                  f"| {interval(out['hard@tokens+prompt'])} {reading(out['hard@tokens+prompt'], margin, x)}")
    if opts["map"]:
        plot_map(tables, opts["map"], margin)
    return tables


def plot_map(tables, path, margin):
    """The map figure: GHPO's lead per pair against the base's slip rate (after RL; at equal generated + prompt tokens,
    the hint's tokens counted), with the 95% intervals and the criterion's margin, and the reach probes of each base
    beside it."""
    try:
        import matplotlib  # optional, as for compare.png
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no map (pip install matplotlib for one)")
        return
    tables = sorted((t for t in tables if t["info"]["slip_rate"] is not None), key=lambda t: t["info"]["slip_rate"])
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    pairs = sorted({p["pair"] for t in tables for p in t["pairs"].values()})
    for ax, endpoint, title in ((axes[0], "hard", "lead on hard accuracy after RL"),
                                (axes[1], "hard@tokens+prompt", "lead at equal generated + prompt tokens")):
        for k, pair in enumerate(pairs):
            pts = [(t["info"]["slip_rate"], v[endpoint]) for t in tables for v in t["pairs"].values()
                   if v["pair"] == pair and v[endpoint] is not None]
            if pts:
                x = [s + 0.006 * (k - (len(pairs) - 1) / 2) for s, _ in pts]
                y = [100 * v[0] for _, v in pts]
                err = [[100 * (v[0] - v[1]) for _, v in pts], [100 * (v[2] - v[0]) for _, v in pts]]
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=pair.replace(":", " - "))
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhspan(-100 * margin, 100 * margin, color="grey", alpha=0.15,
                   label=f"the margin, +-{100 * margin:g} points")
        ax.set(title=title, xlabel="base slip rate (harder ->)", ylabel="points (95% paired bootstrap)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for key, label in (("pass_k", "unhinted pass@k"), ("chain_k", "whole correct chain in k"),
                       ("hint_pass", "pass@G with the largest hint")):
        pts = [(t["info"]["slip_rate"], t["info"][key]) for t in tables if t["info"][key] is not None]
        if pts:
            axes[2].plot(*zip(*pts), marker="o", label=label)
    axes[2].set(title="the base before RL, hard levels (probes.py)", xlabel="base slip rate", ylabel="fraction")
    if axes[2].get_legend_handles_labels()[0]:
        axes[2].legend(fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"map: {path}")


def export(src, dst):
    """A finished comparison folder in compact form: per run metrics.jsonl and summary.json (no weights, checkpoints or
    logs; the config a summary holds is a few kB), and the base's probes.json and made.json (from the runs' init_from),
    in the same layout, which --report reads."""
    n, made = 0, None
    for name in sorted(os.listdir(src)):
        run_dir = os.path.join(src, name)
        if not os.path.isfile(os.path.join(run_dir, "summary.json")):
            continue
        os.makedirs(os.path.join(dst, name), exist_ok=True)
        for f in ("metrics.jsonl", "summary.json"):
            shutil.copyfile(os.path.join(run_dir, f), os.path.join(dst, name, f))
        cfg = json.load(open(os.path.join(run_dir, "summary.json"))).get("config", {})
        made = made or os.path.join(cfg.get("init_from", ghpo.init_from), "made.json")  # one base per folder
        n += 1
    if not n:
        raise UsageError(f"{src}: no run folders with a summary.json to export")
    for source, where in ((os.path.join(src, "probes", "probes.json"), "probes"), (made, "base")):
        if os.path.isfile(source):
            os.makedirs(os.path.join(dst, where), exist_ok=True)
            shutil.copyfile(source, os.path.join(dst, where, os.path.basename(source)))
    print(f"exported {n} runs of {src} -> {dst}")


def matched_group_size(ghpo_run, grpo_run):
    """The pilot rule for the compute-matched GRPO: G = round(G_grpo x GHPO's generated tokens / GRPO's), from a
    pilot pair of runs (their metrics.jsonl and summary.json)."""
    tokens = [sum(json.loads(l).get("generated_tokens", 0) for l in open(os.path.join(r, "metrics.jsonl")))
              for r in (ghpo_run, grpo_run)]
    G = json.load(open(os.path.join(grpo_run, "summary.json"))).get("config", {}).get("group_size", ghpo.group_size)
    matched = round(G * tokens[0] / tokens[1])
    print(f"G_matched = round({G} x {tokens[0]:,} / {tokens[1]:,}) = round({G * tokens[0] / tokens[1]:.3f}) = "
          f"{matched}")
    return matched


def tool_main(argv):
    """compare.py --report DIR1,DIR2,... [--pairs=A:B,...] [--reach=0.75] [--map=map.png] | --export SRC DST |
    --match GHPO_RUN GRPO_RUN."""
    cmd, *rest = argv[0].split("=", 1) + argv[1:]
    opts, positional = dict(MAP_OPTIONS), []
    for arg in rest:
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if key is None:
            positional.append(arg)
        elif key in opts and "=" in arg:
            opts[key] = arg.split("=", 1)[1]
        else:
            raise UsageError(f"{cmd}: cannot read argument {arg!r} (options: {', '.join(MAP_OPTIONS)})")
    want = {"--report": 1, "--export": 2, "--match": 2}[cmd]
    if len(positional) != want:
        raise UsageError(f"{cmd} takes {want} argument(s), got {positional}")
    for p in positional[0].split(",") if cmd == "--report" else positional[:1 if cmd == "--export" else 2]:
        if not os.path.isdir(p):
            raise UsageError(f"{cmd}: no folder {p!r}")
    if cmd == "--report":
        return map_report(positional[0].split(","), opts)
    if cmd == "--export":
        return export(*positional)
    return matched_group_size(*positional)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UsageError as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        sys.exit(2)
