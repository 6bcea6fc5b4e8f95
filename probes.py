"""
Diagnostics of a model on the demo task before any RL: does GHPO have anything to work with on it?

    python probes.py --config small.py                           # the shipped base model
    python probes.py --config small.py --init_from=out/base/KEY  # a base made by python -m data.demo_base

    hint probe   greedy accuracy per level with a hint of each ratio
    pass probe   pass@G per level with a hint of each ratio: is any of G samples, drawn as RL draws them, correct?
    step probe   accuracy of solution step k given the correct steps before it
    reach probe  on the hard levels: unhinted pass@pass_k (what resampling can reach: 4 x 8 draws), how many of those
                 hits are whole correct chains (every step line right) rather than a right answer reached by luck,
                 and pass@G with the largest hint (read from the pass probe): which regime a base is in

It takes ghpo.py's settings (and the two below) and uses ghpo.py's own prompts, sampling and evaluation, so a probe
sees exactly what RL will. Prints four tables and writes them to <out_dir>/probes.json.
"""
import os
import sys

import torch

import checkpoint
import configurator
import ghpo
import prompts
from configurator import UsageError
from evaluate import completions, evaluate, print_table, split_means, table_columns
from model import stop_token_ids

# -----------------------------------------------------------------------------
probe_per_level = 50          # problems per level for each probe (the first ones of each evaluation level)
pass_k = 32                   # reach probe: unhinted samples per hard problem (32: GHPO's 4 rounds of G=8 draws)
config_keys = ["probe_per_level", "pass_k"]
# -----------------------------------------------------------------------------


def hint_probe(model, tok, sets, stop_ids):
    """Greedy accuracy per level with a hint of each ratio: does a hint lift what the model gets right?"""
    return {str(w): evaluate(model, tok, sets, stop_ids, ghpo.eval_settings(), ratio=w)
            for w in (0.0,) + tuple(ghpo.hint_ratios)}


@torch.no_grad()
def pass_probe(model, tok, sets, stop_ids):
    """pass@G per level with a hint of each ratio: the fraction of problems for which at least one of G samples, drawn
    as RL draws them (temperature, top_k, top_p), is correct. At ratio 0 it says whether GRPO gets any signal on a
    level (a greedy accuracy of .01 can hide a pass@8 of .1); at the hint ratios, how often GHPO's hints rescue a
    group that fails without one."""
    generator = torch.Generator(device=model.lm_head.weight.device).manual_seed(ghpo.seed)
    table = {}
    for w in (0.0,) + tuple(ghpo.hint_ratios):
        table[str(w)] = {}
        for name, probed in sets.items():
            groups = ghpo.sample_and_score(model, tok, probed, [w] * len(probed), stop_ids, generator)
            table[str(w)][name] = sum(bool(g["acc"].sum()) for g in groups) / max(len(groups), 1)
        split_means(table[str(w)], sets, ghpo.eval_settings())
    return table


def step_probe(model, tok, sets, stop_ids):
    """Accuracy of solution step k (a line of the reference solution) given the correct steps before it, per level:
    tells whether late steps are the weak ones, i.e. whether hints leave the model something to practise."""
    table = {}
    for name, problems in sets.items():
        cases = []
        for p in problems:
            lines = p["solution"].split("\n")
            for k in range(len(lines)):
                done = "\n".join(lines[:k]) + ("\n" if k else "")
                cases.append((k + 1, ghpo.prompt_ids(tok, p) + tok.encode(done).ids, lines[k]))
        if not cases:
            continue
        n_new = max(len(tok.encode(want).ids) for _, _, want in cases) + 1
        got = completions(model, tok, [c[1] for c in cases], stop_ids, ghpo.eval_settings(), n_new=n_new)
        per_step = {}
        for (k, _, want), text in zip(cases, got):
            per_step.setdefault(k, []).append(text.split("\n")[0].strip() == want.strip())
        table[name] = {str(k): sum(v) / len(v) for k, v in sorted(per_step.items())}
    return table


def whole_chain(text, problem):
    """Whether a completion writes every step line of the problem's worked solution right (data/arith.py's format),
    not only its final answer: a two-digit answer is one of 100, so a few dozen draws hit it by luck often."""
    steps = prompts.step_lines(problem["solution"])
    return [line.strip() for line in text.strip().split("\n")[:len(steps)]] == steps


@torch.no_grad()
def reach_probe(model, tok, sets, stop_ids):
    """On the hard levels, pass_k unhinted samples per problem drawn as RL draws them: pass@pass_k (a right answer
    among them), chain@pass_k (a whole correct chain among them), and the fractions of samples that are right and
    that are whole correct chains; plus the hint's pass@G (the pass probe's, at the largest hint ratio)."""
    generator = torch.Generator(device=model.lm_head.weight.device).manual_seed(ghpo.seed)
    hard = {k: v for k, v in sets.items() if k[1:].isdigit() and int(k[1:]) in ghpo.hard_levels}
    out = {"k": pass_k, "pass": {}, "chain": {}, "right_samples": {}, "chain_samples": {}}
    G = ghpo.group_size
    try:
        ghpo.group_size = pass_k  # sample_and_score draws group_size samples a problem
        for name, probed in hard.items():
            groups = ghpo.sample_and_score(model, tok, probed, [0.0] * len(probed), stop_ids, generator)
            chains = [[bool(a) and whole_chain(t, g["problem"]) for a, t in zip(g["acc"], g["texts"])] for g in groups]
            n = max(len(groups), 1)
            out["pass"][name] = sum(bool(g["acc"].sum()) for g in groups) / n
            out["chain"][name] = sum(any(c) for c in chains) / n
            out["right_samples"][name] = sum(float(g["acc"].sum()) for g in groups) / (n * pass_k)
            out["chain_samples"][name] = sum(sum(c) for c in chains) / (n * pass_k)
    finally:
        ghpo.group_size = G
    for k in ("pass", "chain", "right_samples", "chain_samples"):
        split_means(out[k], hard, ghpo.eval_settings())
    return out


def run_probes(model, tok, eval_sets, stop_ids):
    """The four probes on the first probe_per_level problems of each evaluation level, printed as tables; returns
    {"hint_probe": ..., "pass_probe": ..., "step_probe": ..., "reach_probe": ...}."""
    sets = {k: v[:probe_per_level] for k, v in eval_sets.items()}
    columns = [c for c in table_columns(sets) if c in sets or c in ("easy", "hard")]
    out = {"hint_probe": hint_probe(model, tok, sets, stop_ids)}
    print_table("hint probe: greedy accuracy with a hint of each ratio", out["hint_probe"], columns)
    out["pass_probe"] = pass_probe(model, tok, sets, stop_ids)
    print_table(f"pass@{ghpo.group_size} probe: a correct sample among {ghpo.group_size} (temperature "
                f"{ghpo.temperature}), per hint ratio", out["pass_probe"], columns)
    out["step_probe"] = step_probe(model, tok, sets, stop_ids)
    steps = sorted({k for v in out["step_probe"].values() for k in v}, key=int)
    print_table("step probe: accuracy of step k given the correct steps before it", out["step_probe"], steps)
    reach = out["reach_probe"] = reach_probe(model, tok, sets, stop_ids)
    top = str(max(ghpo.hint_ratios, default=0.0))
    reach["hint"] = {"ratio": float(top), "G": ghpo.group_size, "pass": out["pass_probe"].get(top, {})}
    print_table(f"reach probe: hard levels, {pass_k} unhinted samples (temperature {ghpo.temperature})",
                {f"pass@{pass_k}": reach["pass"], f"chain@{pass_k}": reach["chain"],
                 "right samples": reach["right_samples"], "chain samples": reach["chain_samples"],
                 f"pass@{ghpo.group_size} hint {top}": reach["hint"]["pass"]}, list(reach["pass"]))
    return out


def main(argv):
    """`python probes.py ...`: the probes of init_from, written to out_dir/probes.json."""
    if "--help" in argv or "-h" in argv:
        return print(configurator.help_text([ghpo, sys.modules[__name__]], __doc__.strip()))
    ghpo.configure(argv, [globals()])
    if ghpo.task != "arith":
        raise UsageError("the probes are for the demo task (task=arith): they read worked solutions line by line")
    for key, value in (("probe_per_level", probe_per_level), ("pass_k", pass_k)):
        if value < 1:
            raise UsageError(f"{key} must be >= 1, got {value}")
    if ghpo.threads:
        torch.set_num_threads(ghpo.threads)
    ghpo.check_setup(world=1)
    _, eval_sets = ghpo.load_task()
    model = checkpoint.load_model(ghpo.init_from, torch.device(ghpo.device), ghpo.weights_dtype()).eval()
    tok = checkpoint.open_tokenizer(ghpo.init_from)
    out = run_probes(model, tok, eval_sets, stop_token_ids(tok))
    os.makedirs(ghpo.out_dir, exist_ok=True)
    checkpoint.write_json(os.path.join(ghpo.out_dir, "probes.json"), out | {"model": ghpo.init_from})
    return out


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UsageError as e:
        print(f"probes.py: error: {e}", file=sys.stderr)
        sys.exit(2)
