"""
Evaluation of a model without hints, as ghpo.py, probes.py and compare.py run it: greedy completions (aime24: the mean
over aime_samples samples), graded by verify.py, per benchmark or demo level, with the paper's mean or the demo's
easy/hard splits, and the fixed-width tables they print. Reads no module's settings: the caller passes EvalSettings.
"""
import time
from typing import Callable, NamedTuple

import torch

import prompts
import rollout
from data.datasets import PAPER_BENCHMARKS
from distributed import all_gather, all_sum, rank_world
from verify import grade


class EvalSettings(NamedTuple):
    """What evaluation reads of a run's settings (ghpo.eval_settings() makes it from ghpo.py's)."""
    prompt: prompts.PromptFormat  # how a problem (and a hint) becomes a prompt
    max_new_tokens: int           # completion budget
    aime_samples: int             # aime24: the mean over this many samples per problem
    temperature: float            # those samples' temperature (top_p 0.95); every other completion is greedy
    seed: int                     # the samples' generator seed
    benchmarks: tuple             # the paper's mean is over those of these that ran (extras such as GSM8K aside)
    easy_levels: tuple            # the "easy" split's levels
    hard_levels: tuple            # the "hard" split's levels
    rows: Callable                # rows(model, prompt_list, samples, n_new): rows one sampling call may decode (0: all)


def prompt_ids(tok, problem, fmt, ratio=0.0):
    """The token ids of a problem's prompt with a hint of this ratio (prompts.py)."""
    return tok.encode(prompts.prompt_text(problem, ratio, fmt)).ids


@torch.no_grad()
def completions(model, tok, prompt_list, stop_ids, es, samples=1, n_new=None):
    """The completions of the prompts (token id lists): one greedy completion each, or with samples > 1 that many
    samples each (prompt-major) at es.temperature, top_p 0.95, from a generator seeded with es.seed."""
    texts = []
    generator = torch.Generator(device=model.lm_head.weight.device).manual_seed(es.seed)
    n_new = n_new or es.max_new_tokens
    step = max(1, es.rows(model, prompt_list, samples, n_new) // samples)  # prompts a batch
    for i in range(0, len(prompt_list), step):
        out = rollout.sample_groups(model, prompt_list[i:i + step], samples, n_new,
                                    temperature=0.0 if samples == 1 else es.temperature,
                                    top_p=1.0 if samples == 1 else 0.95, stop_ids=stop_ids, generator=generator)
        texts += [tok.decode(t[m].tolist(), skip_special_tokens=True) for t, m in zip(out["tokens"], out["mask"])]
    return texts


def evaluate(model, tok, eval_sets, stop_ids, es, ratio=0.0, progress=True, items=None):
    """Accuracy per split without hints (ratio 0): greedy, except aime24 (the mean of es.aime_samples samples), plus
    the `mean` over the benchmarks or the `easy`/`hard` aggregates. Ranks evaluate every world-th problem, counts
    summed. With progress, rank 0 prints each split's accuracy as it finishes, on one line. items, a dict, gets each
    greedy split's per-problem results, {split: "0110..."} (1: right), in the split's order (for paired comparisons)."""
    model.eval()
    rank, world = rank_world()
    show, t0, acc = progress and rank == 0 and eval_sets, time.time(), {}
    if show:
        print("eval:", end="", flush=True)
    for name, problems in eval_sets.items():
        mine, k = problems[rank::world], es.aime_samples if name == "aime24" else 1
        texts = completions(model, tok, [prompt_ids(tok, p, es.prompt, ratio) for p in mine], stop_ids, es,
                            samples=k)
        graded = [grade(t, p) for t, p in zip(texts, [p for p in mine for _ in range(k)])]
        right, n = all_sum(sum(graded), len(texts))
        acc[name] = right / max(n, 1)
        if items is not None and k == 1:  # rank r holds problems r, r + world, ...: interleaved back in order
            mark = all_gather("".join(str(int(g)) for g in graded))
            items[name] = "".join(mark[i % world][i // world] for i in range(len(problems)))
        if show:
            print(f" {name} {acc[name]:.3f}", end="", flush=True)
    names = [n for n in es.benchmarks if n in eval_sets]
    names = [n for n in names if n in PAPER_BENCHMARKS] or names  # extras (GSM8K) stay out of the paper's mean
    if names:  # the paper's mean: every benchmark weighs the same
        acc["mean"] = sum(acc[n] for n in names) / len(names)
    split_means(acc, eval_sets, es)
    if show:
        print("".join(f" | {k} {acc[k]:.3f}" for k in ("mean", "easy", "hard") if k in acc)
              + f" ({time.time() - t0:.0f}s)", flush=True)
    return acc


def split_means(acc, eval_sets, es):
    """acc plus the `easy` and `hard` aggregates over the levels it has, each level weighted by its problem count."""
    for split, levels in (("easy", es.easy_levels), ("hard", es.hard_levels)):
        names = [f"L{lv}" for lv in levels if f"L{lv}" in acc]
        if names:
            acc[split] = sum(acc[n] * len(eval_sets[n]) for n in names) / sum(len(eval_sets[n]) for n in names)
    return acc


def table_columns(eval_sets):
    """The paper's benchmarks in its order, their mean, then the extras (GSM8K) or the demo's levels and splits."""
    paper = [n for n in PAPER_BENCHMARKS if n in eval_sets]
    return paper + ["mean"] + [n for n in eval_sets if n not in paper] + ["easy", "hard"]


def table_title(title, eval_sets, es):
    """A table's title naming how its columns were sampled: greedy, and aime24's samples only where aime24 ran."""
    return f"{title} (no hints; greedy{f', aime24 mean of {es.aime_samples} samples' if 'aime24' in eval_sets else ''})"


def print_table(title, rows, columns):
    """rows: {row name: {column: value}}; prints a fixed-width table (on rank 0 only, when it has columns)."""
    if rank_world()[0] or not columns:
        return
    w, r = max([8] + [len(str(c)) + 1 for c in columns]), max([10] + [len(str(n)) + 1 for n in rows])
    print(title)
    print(f"{'':>{r}}" + "".join(f"{c:>{w}}" for c in columns))
    for name, vals in rows.items():
        print(f"{name:>{r}}" + "".join(f"{vals[c]:>{w}.3f}" if c in vals else f"{'-':>{w}}" for c in columns))
