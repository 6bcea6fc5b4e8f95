"""
The built-in task of the CPU demo: repeated modular addition, one short line per step.

    problem:  Start with 37. Add 8 to it 5 times, keeping only the last two digits. What is the result?
    solution: 37+8=45
              45+8=53
              53+8=61
              61+8=69
              69+8=77
              \\boxed{77}

Level = number of steps (1..8); 1,800 problems per level. The problem text has the same length at every level, and
every step is the same kind of line. Level 1 alone covers every (value, addend) pair, so the per-step arithmetic is
learned on the easy levels.
A small model trained on levels 1-3 lacks one thing on harder levels: it has to keep going past step 3 and stop at
step n. A hint (the first steps of the solution) puts the model where it would be after solving those steps itself,
and the next steps are left to practise: the state GHPO's guided imitation trains is the one the model reaches alone.
(DEMO_NOTES.md explains why earlier formats failed: there the missing skill was reading the problem, which a
solution-prefix hint gives away instead of training.)

With countdown=True every step line also says how many steps are left (`37+8=45, 4 left`, ..., `69+8=77, 0 left`):
stopping is then read off the last line instead of counted (configs/small_countdown.py, docs/demo.md "Second attempt").
Levels in wide_levels use two-digit addends (10..99), a per-step skill the easy levels never show.

Tokenizer: word level, built with the `tokenizers` library and saved as tokenizer.json beside the weights, so it
loads through model.load_tokenizer like Qwen's. Digits are single tokens, as in Qwen's tokenizer (whole-number
tokens were tried: a tiny model then fails to copy or add two-digit numbers, each being a rarely seen token);
words carry their leading space.
"""
import json
import os
import random
import re

from tokenizers import Tokenizer, models, pre_tokenizers, decoders, Regex

LEVELS = tuple(range(1, 9))
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
SPLIT_PATTERN = r" ?[A-Za-z]+|\s|."   # words with their leading space, then single characters (digits too)


def make_problem(start: int, addend: int, level: int, countdown: bool = False) -> dict:
    """addend > 0 adds, addend < 0 subtracts; values stay in 0..99 (the last two digits). With countdown each step
    line also says how many steps are left (`37+8=45, 4 left`), so stopping is read off the last line instead of
    counted."""
    lines, value = [], start
    for k in range(level):
        new = (value + addend) % 100
        left = f", {level - k - 1} left" if countdown else ""
        lines.append(f"{value}{'+' if addend > 0 else '-'}{abs(addend)}={new}{left}")
        value = new
    verb = f"Add {addend} to it" if addend > 0 else f"Subtract {-addend} from it"
    problem = f"Start with {start}. {verb} {level} times, keeping only the last two digits. What is the result?"
    solution = "\n".join(lines) + f"\n\\boxed{{{value}}}"
    return {"problem": problem, "solution": solution, "answer": str(value), "level": level}


def slip_solution(problem: dict, k: int, rate: float, rng) -> str:
    """The worked solution as a careless student writes it: the first k step lines as they are, then each step's
    result one too high (mod 100) with probability rate, the next line going on from the value written, and the last
    value boxed. A base model trained on such lines learns to be right at a step with probability about 1 - rate,
    whatever the float sums of its training (the demo base's slip levels, data/demo_base.py)."""
    lines = problem["solution"].split("\n")[:-1]
    out, value = lines[:k], None
    for line in lines[k:]:
        m = re.fullmatch(r"(\d+)([+-])(\d+)=(\d+)(.*)", line)  # value, sign, |addend|, result, ", n left"
        start = int(m[1]) if value is None else value
        value = (start + (int(m[3]) if m[2] == "+" else -int(m[3]))) % 100
        value = (value + 1) % 100 if rng.random() < rate else value
        out.append(f"{start}{m[2]}{m[3]}={value}{m[5]}")
    if value is None:
        return problem["solution"]
    return "\n".join(out) + f"\n\\boxed{{{value}}}"


def level_problems(level: int, seed: int = 0, countdown: bool = False, wide: bool = False) -> list:
    """All problems of a level in a fixed order shuffled by seed: 1,800 (100 starts x addends -9..-1, 1..9), or with
    wide 18,000 (two-digit addends -99..-10, 10..99)."""
    addends = [a for a in range(-99, 100) if 10 <= abs(a)] if wide else [a for a in range(-9, 10) if a]
    out = [make_problem(s, a, level, countdown) for s in range(100) for a in addends]
    random.Random(f"{seed}-{level}").shuffle(out)
    return out


def make_splits(levels, eval_per_level: int, seed: int = 0, countdown: bool = False, wide_levels=()):
    """(train, evals): for each level, the first eval_per_level problems of its shuffled list are held out for
    evaluation and the rest are training problems, so the two never overlap."""
    train, evals = [], []
    for level in levels:
        problems = level_problems(level, seed, countdown, level in wide_levels)
        if eval_per_level >= len(problems):
            raise ValueError(f"eval_per_level={eval_per_level} leaves no training problems (a level has "
                             f"{len(problems)})")
        evals += problems[:eval_per_level]
        train += problems[eval_per_level:]
    return train, evals


def build_tokenizer(extra_texts=(), countdown: bool = False) -> Tokenizer:
    """Word-level tokenizer whose vocabulary covers every token the task and the hint template can produce."""
    split = pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")
    texts = [p["problem"] + "\n" + p["solution"] for a in (-9, 9) for lv in LEVELS
             for p in (make_problem(50, a, lv, countdown),)]
    texts += list(extra_texts) + [str(i) for i in range(10)]
    pieces = sorted({piece for text in texts for piece, _ in split.pre_tokenize_str(text)})
    vocab = {t: i for i, t in enumerate(list(SPECIAL_TOKENS) + ["[UNK]"] + pieces)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = split
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


def save_tokenizer(tok: Tokenizer, folder: str):
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))


if __name__ == "__main__":  # print a problem of each level
    for level in LEVELS:
        print(json.dumps(level_problems(level)[0]))
