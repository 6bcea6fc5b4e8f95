"""
The diagnostics ghpo.py prints before RL on the demo task: does GHPO have anything to work with on this base model?

    hint probe   greedy accuracy per level with a hint of each ratio
    pass probe   pass@G per level with a hint of each ratio: is any of G samples, drawn as RL draws them, correct?
    step probe   accuracy of solution step k given the correct steps before it

The functions take `run`, the running ghpo module: its prompt format, sampler, evaluation and settings, so a probe
sees exactly what RL will.
"""
import torch


def run_all(run, model, tok, eval_sets, stop_ids, columns):
    """The three probes, printed as tables; returns {"hint_probe": ..., "pass_probe": ..., "step_probe": ...}."""
    out = {"hint_probe": hint_probe(run, model, tok, eval_sets, stop_ids)}
    run.print_table("hint probe: base accuracy with a hint of each ratio", out["hint_probe"], columns)
    out["pass_probe"] = pass_probe(run, model, tok, eval_sets, stop_ids)
    run.print_table(f"pass@{run.group_size} probe: a correct sample among {run.group_size} (temperature "
                    f"{run.temperature}), per hint ratio", out["pass_probe"], columns)
    out["step_probe"] = step_probe(run, model, tok, eval_sets, stop_ids)
    steps = sorted({k for v in out["step_probe"].values() for k in v}, key=int)
    run.print_table("step probe: accuracy of step k given the correct steps before it", out["step_probe"], steps)
    return out


def hint_probe(run, model, tok, eval_sets, stop_ids):
    """The base model's accuracy per level with a hint of each ratio: does GHPO have anything to work with?"""
    sets = {k: v[:run.probe_per_level] for k, v in eval_sets.items()}
    return {str(w): run.evaluate(model, tok, sets, stop_ids, ratio=w) for w in (0.0,) + tuple(run.hint_ratios)}


@torch.no_grad()
def pass_probe(run, model, tok, eval_sets, stop_ids):
    """pass@G per level with a hint of each ratio: the fraction of problems for which at least one of G samples, drawn
    as RL draws them (temperature, top_k, top_p), is correct. At ratio 0 it says whether GRPO gets any signal on a
    level (a greedy accuracy of .01 can hide a pass@8 of .1); at the hint ratios, how often GHPO's hints rescue a
    group that fails without one."""
    generator = torch.Generator(device=model.lm_head.weight.device).manual_seed(run.seed)
    sets = {k: v[:run.probe_per_level] for k, v in eval_sets.items()}
    table = {}
    for w in (0.0,) + tuple(run.hint_ratios):
        table[str(w)] = {}
        for name, probed in sets.items():
            groups = run.sample_and_score(model, tok, probed, [w] * len(probed), stop_ids, generator)
            table[str(w)][name] = sum(bool(g["acc"].sum()) for g in groups) / max(len(groups), 1)
        run.split_means(table[str(w)], sets)
    return table


def step_probe(run, model, tok, eval_sets, stop_ids):
    """Accuracy of solution step k (a line of the reference solution) given the correct steps before it, per level:
    tells whether late steps are the weak ones, i.e. whether hints leave the model something to practise."""
    table = {}
    for name, problems in eval_sets.items():
        cases = []
        for p in problems[:run.probe_per_level]:
            lines = p["solution"].split("\n")
            for k in range(len(lines)):
                done = "\n".join(lines[:k]) + ("\n" if k else "")
                cases.append((k + 1, tok.encode(run.prompt_text(p)).ids + tok.encode(done).ids, lines[k]))
        if not cases:
            continue
        n_new = max(len(tok.encode(want).ids) for _, _, want in cases) + 1
        got = run.greedy_completions(model, tok, [c[1] for c in cases], stop_ids, n_new=n_new)
        per_step = {}
        for (k, _, want), text in zip(cases, got):
            per_step.setdefault(k, []).append(text.split("\n")[0].strip() == want.strip())
        table[name] = {str(k): sum(v) / len(v) for k, v in sorted(per_step.items())}
    return table
