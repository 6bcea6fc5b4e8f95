"""
Loaders for jsonl datasets in MATH / GSM8K format -> a list of problems {problem, solution, answer, level}.

Every row needs a problem text and a gold answer that verify.py can read. A row whose gold answer is empty or cannot
be parsed is skipped and counted: the released GHPO code instead gives it a NaN reward, and such a group is then never
hinted (docs/method.md, "Where the released code and the paper differ"). A malformed file is an error that names
the file and the line.
"""
import csv
import json
import os
import random

from configurator import UsageError
from verify import gold_answer, is_parseable

# field that holds the problem text, per dataset format
PROBLEM_FIELD = {"math": "problem", "math500": "problem", "gsm8k": "question", "aime24": "problem", "amc23": "problem",
                 "minerva": "problem", "olympiadbench": "question"}
# the evaluation benchmarks shipped in data/ (origins and licences: data/LICENSES.md): name -> (file, format)
BENCHMARKS = {"aime24": ("aime24_test.jsonl", "aime24"), "math500": ("math500_test.jsonl", "math500"),
              "olympiadbench": ("olympiadbench_test.jsonl", "olympiadbench"), "amc23": ("amc23_test.jsonl", "amc23"),
              "minerva": ("minerva_math_test.jsonl", "minerva"), "gsm8k": ("gsm8k_test.jsonl", "gsm8k"),
              "gpqa_diamond": ("gpqa_diamond.csv", "gpqa")}  # not shipped: docs/usage.md, "Real models"
PAPER_BENCHMARKS = ("aime24", "math500", "olympiadbench", "amc23", "minerva", "gpqa_diamond")  # its table's columns
LETTERS = "ABCD"
GPQA_COLUMNS = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


def load_jsonl(path, dataset, levels=None, limit=None):
    """Problems of a jsonl file in `dataset`'s format (a key of PROBLEM_FIELD). levels: keep only these MATH levels.
    Returns (problems, skipped) where skipped counts rows whose gold answer was empty or unparseable."""
    if dataset not in PROBLEM_FIELD:
        raise UsageError(f"{path}: unknown dataset format {dataset!r}; known: {', '.join(PROBLEM_FIELD)}")
    problems, skipped = [], 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise UsageError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            field = PROBLEM_FIELD[dataset]
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise UsageError(f"{path}:{lineno}: missing or empty key {field!r}")
            level = str(row.get("level", "")).removeprefix("Level ").strip()  # 3, "3" or "Level 3"; "?" is None
            level = int(level) if level.isdigit() else None
            if levels is not None and level not in levels:
                continue
            answer = gold_answer(row, dataset)
            if answer is None or not is_parseable(answer):
                skipped += 1
                continue
            solution = row.get("solution", "")
            if dataset == "gsm8k":  # the worked solution is the answer text before "#### x"
                solution = row["answer"]
            if isinstance(solution, list):  # OlympiadBench keeps a list of solutions
                solution = solution[0] if solution else ""
            problems.append({"problem": row[field].strip(), "solution": solution, "answer": answer, "level": level})
            if limit is not None and len(problems) >= limit:
                break
    return problems, skipped


def math_task(train_file, train_levels, benchmarks, bench_limit=0, eval_only=False, gpqa_file=""):
    """ghpo.py's task=math: (training problems of train_file at train_levels, {benchmark: its problems}), the
    benchmarks limited to bench_limit rows each (0: all). train_file and gpqa_file are looked up in the working
    directory, then in the repository; GPQA-Diamond is skipped, with one line, when gpqa_file is absent."""
    here = os.path.dirname(os.path.abspath(__file__))
    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown:
        raise UsageError(f"benchmarks: unknown {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    evals = {}
    for name in benchmarks:
        file, fmt = BENCHMARKS[name]
        if fmt == "gpqa":  # not shipped (its authors ask that it not be posted in plain text): docs/usage.md says where
            path = gpqa_file if os.path.isfile(gpqa_file) else os.path.join(os.path.dirname(here), gpqa_file)
            if os.path.isfile(path):
                evals[name] = load_gpqa(path, limit=bench_limit or None)[0]
            else:
                print(f"{name}: skipped, no file {gpqa_file!r} (not shipped; docs/usage.md says where to get it)")
            continue
        evals[name], skipped = load_jsonl(os.path.join(here, file), fmt, limit=bench_limit or None)
        if skipped:
            print(f"{file}: {skipped} rows skipped (empty or unparseable gold answer)")
    if eval_only:
        return [], evals
    path = train_file if os.path.isfile(train_file) else os.path.join(os.path.dirname(here), train_file)
    if not os.path.isfile(path):
        raise UsageError(f"train_file: {train_file!r} not found (looked in . and {os.path.dirname(here)})")
    train, skipped = load_jsonl(path, "math", levels=set(train_levels))
    print(f"{train_file}: {len(train)} problems, {skipped} skipped (empty or unparseable gold answer)")
    if not train:
        raise UsageError(f"{train_file}: no problems at train_levels {train_levels}")
    return train, evals


def gpqa_problem(question, correct, incorrect, key):
    """A multiple-choice problem: the four options shuffled by a generator seeded with `key` (the same order on every
    run and machine), listed A-D after the question; the gold answer is the correct option's letter."""
    options = [correct, *incorrect]
    random.Random(key).shuffle(options)
    text = question.strip() + "\n\n" + "\n".join(f"{l}) {o.strip()}" for l, o in zip(LETTERS, options))
    text += "\n\nAnswer with the letter of the correct option, as \\boxed{A}, \\boxed{B}, \\boxed{C} or \\boxed{D}."
    return {"problem": text, "solution": "", "answer": LETTERS[options.index(correct)], "level": None,
            "choices": LETTERS}


def load_gpqa(path, seed=0, limit=None):
    """GPQA (Rein et al. 2023) from the authors' CSV (columns Question, Correct Answer, Incorrect Answer 1-3; others
    ignored). Each row's options are shuffled with its own fixed seed (seed and the row's Record ID, else its row
    number). Returns (problems, 0); a missing column or an empty field is an error naming the file and row."""
    problems = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in GPQA_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UsageError(f"{path}: missing column(s) {', '.join(map(repr, missing))} (the authors' GPQA CSV has "
                             f"{', '.join(GPQA_COLUMNS)})")
        for n, row in enumerate(reader, 1):
            empty = [c for c in GPQA_COLUMNS if not (row[c] or "").strip()]
            if empty:
                raise UsageError(f"{path}: row {n} (line {reader.line_num}): empty {', '.join(map(repr, empty))}")
            key = f"{seed}:{row.get('Record ID') or n}"
            problems.append(gpqa_problem(row["Question"], row["Correct Answer"],
                                         [row[f"Incorrect Answer {i}"] for i in (1, 2, 3)], key))
            if limit is not None and len(problems) >= limit:
                break
    return problems, 0
