"""
Run several methods and seeds of ghpo.py from the same cached base model, then print a table like the paper's
(per-level accuracy before and after RL, per method, mean over seeds) and, when matplotlib is installed, plot
accuracy reward, hinted fraction per stage and grad norm over steps.

    python compare.py --config small.py --methods=ghpo,grpo --seeds=0,1,2 [--jobs=2] [any ghpo.py --key=value]

Each run writes <out_dir>/<method>-s<seed>/; an existing summary.json is reused, so an interrupted comparison
continues where it stopped. --jobs runs that many processes at once (each with threads = cores / jobs).
"""
import json
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


def main(argv):
    methods, seeds, jobs, out_dir, passed = ["ghpo", "grpo"], [0, 1, 2], 1, "out/compare", []
    for arg in argv:
        if arg.startswith("--methods="):
            methods = arg.split("=", 1)[1].split(",")
        elif arg.startswith("--seeds="):
            seeds = [int(s) for s in arg.split("=", 1)[1].split(",")]
        elif arg.startswith("--jobs="):
            jobs = int(arg.split("=", 1)[1])
        elif arg.startswith("--out_dir="):
            out_dir = arg.split("=", 1)[1]
        else:
            passed.append(arg)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    runs = [(m, s, os.path.join(out_dir, f"{m}-s{s}")) for m in methods for s in seeds]
    # the first run trains and caches the base model; the others start from it
    run(passed, runs[0][2], runs[0][0], runs[0][1], os.cpu_count() or 1)
    # the probes describe the shared base model: the first run's summary has them, the others skip them
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda r: run(passed + ["--probe_per_level=0"], r[2], r[0], r[1], threads), runs[1:]))

    summaries = {r: json.load(open(os.path.join(r[2], "summary.json"))) for r in runs}
    splits = list(next(iter(summaries.values()))["eval_before"])
    mean = lambda xs: sum(xs) / len(xs)
    print(f"greedy accuracy without hints after RL, mean over seeds {seeds}; base = the shared starting model")
    print(f"{'':>14}" + "".join(f"{s:>8}" for s in splits))
    first = summaries[runs[0]]["eval_before"]
    print(f"{'base':>14}" + "".join(f"{first[s]:>8.3f}" for s in splits))
    table = {}
    for m in methods:
        table[m] = {s: mean([summaries[r]["eval_after"][s] for r in runs if r[0] == m]) for s in splits}
        print(f"{m:>14}" + "".join(f"{table[m][s]:>8.3f}" for s in splits))
    for m in methods:
        per_seed = [f"{summaries[r]['eval_after']['hard']:.3f}" for r in runs if r[0] == m]
        print(f"{m}: hard accuracy per seed {', '.join(per_seed)}")
    with open(os.path.join(out_dir, "compare.json"), "w") as f:
        json.dump({"base": first, "after": table, "runs": {f"{m}-s{s}": summaries[(m, s, d)]["eval_after"]
                                                          for m, s, d in runs}}, f, indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib for one)")
        return table
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for m, s, d in runs:
        lines = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if '"reward"' in l]
        steps = [l["step"] for l in lines]
        axes[0].plot(steps, [l["accuracy"] for l in lines], label=f"{m} s{s}", alpha=0.7)
        axes[2].plot(steps, [l["grad_norm"] for l in lines], label=f"{m} s{s}", alpha=0.7)
        if m == "ghpo":
            for w in lines[0]["hinted"]:
                axes[1].plot(steps, [l["hinted"][w] for l in lines], label=f"s{s} hint {w}", alpha=0.7)
    for ax, title in zip(axes, ("accuracy reward", "fraction of groups hinted, per stage (ghpo)",
                                "grad norm (pre-clip)")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    fig.savefig(os.path.join(out_dir, "compare.png"), dpi=100, bbox_inches="tight")
    print(f"plot: {out_dir}/compare.png")
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
