"""
The CPU demo's task: repeated modular addition, one short line per step, each saying how many steps are left.

    problem:  Start with 37. Add 8 to it 5 times, keeping only the last two digits. What is the result?
    solution: 37+8=45, 4 left
              45+8=53, 3 left
              53+8=61, 2 left
              61+8=69, 1 left
              69+8=77, 0 left
              \\boxed{77}

Level = number of steps; 1,800 problems per level (100 starts x addends -9..-1, 1..9). The problem text has the same
length at every level and every step is the same kind of line (level 1 alone holds every (value, addend) pair), so a
hard level differs from an easy one only in how many steps must be right in a row; a hint (the first steps of the
solution) shortens that chain and leaves steps of the same kind to practise. The counter lets the model read off when
to stop instead of counting.
`slip_solution` writes a solution as a careless student would: the demo's base model (data/demo_base.py) reads the
hard levels solved that way, so it half-knows them (docs/demo.md).

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

TOKENIZER_LEVELS = tuple(range(1, 9))  # levels whose texts make the tokenizer's vocabulary (any level has the same)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
SPLIT_PATTERN = r" ?[A-Za-z]+|\s|."   # words with their leading space, then single characters (digits too)


def make_problem(start: int, addend: int, level: int) -> dict:
    """addend > 0 adds, addend < 0 subtracts; values stay in 0..99 (the last two digits)."""
    lines, value = [], start
    for k in range(level):
        new = (value + addend) % 100
        lines.append(f"{value}{'+' if addend > 0 else '-'}{abs(addend)}={new}, {level - k - 1} left")
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


def level_problems(level: int, seed: int = 0) -> list:
    """All 1,800 problems of a level (100 starts x addends -9..-1, 1..9) in a fixed order shuffled by seed."""
    out = [make_problem(s, a, level) for s in range(100) for a in range(-9, 10) if a]
    random.Random(f"{seed}-{level}").shuffle(out)
    return out


def make_splits(levels, eval_per_level: int, seed: int = 0):
    """(train, evals): for each level, the first eval_per_level problems of its shuffled list are held out for
    evaluation and the rest are training problems, so the two never overlap."""
    train, evals = [], []
    for level in levels:
        problems = level_problems(level, seed)
        if eval_per_level >= len(problems):
            raise ValueError(f"eval_per_level={eval_per_level} leaves no training problems (a level has "
                             f"{len(problems)})")
        evals += problems[:eval_per_level]
        train += problems[eval_per_level:]
    return train, evals


def arith_task(train_levels, eval_levels, eval_per_level):
    """ghpo.py's task=arith: (training problems, {"L<level>": held-out problems}); the two never overlap."""
    train, _ = make_splits(train_levels, eval_per_level)
    _, evals = make_splits(eval_levels, eval_per_level)
    return train, {f"L{lv}": [p for p in evals if p["level"] == lv] for lv in eval_levels}


def build_tokenizer(extra_texts=()) -> Tokenizer:
    """Word-level tokenizer whose vocabulary covers every token the task and the hint template can produce."""
    split = pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")
    texts = [p["problem"] + "\n" + p["solution"] for a in (-9, 9) for lv in TOKENIZER_LEVELS
             for p in (make_problem(50, a, lv),)]
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


if __name__ == "__main__":  # print a problem of each level the demo uses
    for level in (1, 2, 3, 7, 8, 9):
        print(json.dumps(level_problems(level)[0]))
