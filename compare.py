"""
Run several methods and RL seeds of ghpo.py, from one base model or from several, then print a table like the paper's
(per-level accuracy before and after RL, per method, mean over runs), the hard accuracy of every run with its spread,
the per-base difference between the first two methods, and the mechanism behind it (hard groups with no correct
unhinted sample, hinted groups a hint rescued). With matplotlib installed it also plots accuracy reward, hinted
fraction per stage and grad norm over steps.

    python compare.py --config small.py --methods=ghpo,grpo --seeds=0,1,2 [--base_seeds=0,1,2] [--jobs=2]
                      [any ghpo.py --key=value]

Each run writes <out_dir>/<method>-s<seed>/ (with --base_seeds: <out_dir>/b<base_seed>/<method>-s<seed>/); an existing
summary.json is reused, so an interrupted comparison continues where it stopped. Without --base_seeds every run starts
from the config's own base model; --base_seeds trains each of those base models here (init_from=scratch with that
base_seed, cached by ghpo.py). --jobs runs that many processes at once, each with --threads torch threads (default
cores / jobs). The first run of each base model prints its probes and the other runs skip them; a base trained here
(init_from=scratch) and not yet in the cache is trained by its first run, alone and with every job's threads, before
the runs that share it, while runs from a shipped or cached base all start at once.
"""
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def run(args, folder, method, seed, threads):
    if os.path.isfile(os.path.join(folder, "summary.json")):
        return
    os.makedirs(folder, exist_ok=True)
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ghpo.py"), *args,
           f"--method={method}", f"--seed={seed}", f"--out_dir={folder}", f"--threads={threads}"]
    with open(os.path.join(folder, "log.txt"), "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
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
    print(f"{'':>14}" + "".join(f"{c:>8}" for c in s["splits"]))
    before = {c: mean([base_before[b][c] for b in s["bases"]]) for c in s["splits"]}
    print(f"{'base':>14}" + "".join(f"{before[c]:>8.3f}" for c in s["splits"]))
    for m in methods:
        print(f"{m:>14}" + "".join(f"{s['after'][m][c]:>8.3f}" for c in s["splits"]))
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


def main(argv):
    methods, seeds, base_seeds, jobs, out_dir, threads, passed = ["ghpo", "grpo"], [0, 1, 2], None, 1, "out/compare", 0, []
    for arg in argv:
        if arg.startswith("--methods="):
            methods = arg.split("=", 1)[1].split(",")
        elif arg.startswith("--seeds="):
            seeds = [int(s) for s in arg.split("=", 1)[1].split(",")]
        elif arg.startswith("--base_seeds="):
            base_seeds = [int(s) for s in arg.split("=", 1)[1].split(",")]
        elif arg.startswith("--jobs="):
            jobs = int(arg.split("=", 1)[1])
        elif arg.startswith("--out_dir="):
            out_dir = arg.split("=", 1)[1]
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
        else:
            passed.append(arg)
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    bases = base_seeds if base_seeds is not None else [None]  # None: the config's own base model
    runs = [(b, m, s, os.path.join(out_dir, *([f"b{b}"] if b is not None else []), f"{m}-s{s}"))
            for b in bases for s in seeds for m in methods]  # seed-major: an interrupted comparison stays paired
    # --base_seeds trains those base models here from scratch, even when the config starts from a shipped one
    args = lambda b: passed + ([f"--base_seed={b}", "--init_from=scratch"] if b is not None else [])
    firsts = [next(r for r in runs if r[0] == b) for b in bases]  # print each base model's probes
    import ghpo
    from data import demo_base
    def untrained(b):  # a base model trained here and not yet in the cache
        return ghpo.configure(args(b))["init_from"] == "scratch" and not demo_base.is_trained(demo_base.base_path(ghpo))
    alone = [f for f in firsts if untrained(f[0])]
    for b, m, s, d in alone:  # train and cache each base model before the runs that share it
        run(args(b), d, m, s, threads * jobs)
    with ThreadPoolExecutor(jobs) as pool:  # a shipped or cached base needs no training: its first run joins the others
        list(pool.map(lambda r: run(args(r[0]) + ([] if r in firsts else ["--probe_per_level=0"]), r[3], r[1], r[2],
                                    threads), [r for r in runs if r not in alone]))

    summaries = {r: json.load(open(os.path.join(r[3], "summary.json"))) for r in runs}
    results = {r[:3]: {"eval_before": summaries[r]["eval_before"], "eval_after": summaries[r]["eval_after"],
                       "mechanism": run_means(r[3])} for r in runs}  # keyed (base, method, seed)
    base_before = {f[0]: summaries[f]["eval_before"] for f in firsts}
    s = report(results, methods, base_before)
    with open(os.path.join(out_dir, "compare.json"), "w") as f:
        json.dump({"base": {str(b): v for b, v in base_before.items()}, "after": s["after"],
                   "hard": {m: {str(b): v for b, v in s["hard"][m].items()} for m in methods},
                   "diff": {str(b): v for b, v in s["diff"].items()}, "mechanism": s["mechanism"],
                   "probes": {str(f[0]): {k: summaries[f].get(k) for k in ("hint_probe", "pass_probe")}
                              for f in firsts},
                   "runs": {os.path.relpath(r[3], out_dir): summaries[r]["eval_after"] for r in runs}}, f, indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib for one)")
        return s
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for b, m, seed, d in runs:
        label = f"{m} s{seed}" + (f" b{b}" if b is not None else "")
        lines = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if '"reward"' in l]
        steps = [l["step"] for l in lines]
        axes[0].plot(steps, [l["accuracy"] for l in lines], label=label, alpha=0.7)
        axes[2].plot(steps, [l["grad_norm"] for l in lines], label=label, alpha=0.7)
        if m == "ghpo":
            for w in lines[0]["hinted"]:
                axes[1].plot(steps, [l["hinted"][w] for l in lines], label=f"{label} hint {w}", alpha=0.7)
    for ax, title in zip(axes, ("accuracy reward", "fraction of groups hinted, per stage (ghpo)",
                                "grad norm (pre-clip)")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    fig.savefig(os.path.join(out_dir, "compare.png"), dpi=100, bbox_inches="tight")
    print(f"plot: {out_dir}/compare.png")
    return s


if __name__ == "__main__":
    main(sys.argv[1:])
