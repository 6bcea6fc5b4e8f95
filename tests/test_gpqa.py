"""GPQA-Diamond: the loader of the authors' CSV on rows written here (the data is not shipped) and the letter check."""
import csv

import pytest

from data.datasets import GPQA_COLUMNS, load_gpqa
from verify import extract_choice, verify_choice

# written for these tests, in the CSV's shape: quoted commas and newlines, an extra column, Record IDs
ROWS = [{"Record ID": f"rec{i}", "Question": f"Which value, of the four, is number {i}?\nThink it through.",
         "Correct Answer": f"right {i}", "Incorrect Answer 1": f"wrong {i}a, with a comma",
         "Incorrect Answer 2": f"wrong {i}b", "Incorrect Answer 3": f"wrong\n{i}c", "Subdomain": "Testing"}
        for i in range(40)]


def write_csv(path, rows, columns=("Record ID", *GPQA_COLUMNS, "Subdomain")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return str(path)


def test_options_shuffled_per_row_with_a_fixed_seed(tmp_path):
    path = write_csv(tmp_path / "gpqa_diamond.csv", ROWS)
    problems, skipped = load_gpqa(path)
    assert skipped == 0 and len(problems) == 40
    for row, p in zip(ROWS, problems):
        lines = p["problem"].split("\n\n")
        assert lines[0] == row["Question"]
        options = dict(line.split(") ", 1) for line in lines[1].split("\n") if line[:2] in ("A)", "B)", "C)", "D)"))
        assert set(options) == set("ABCD")
        assert options[p["answer"]] == row["Correct Answer"]
        assert "\\boxed{A}" in lines[-1] and p["choices"] == "ABCD"
    letters = [p["answer"] for p in problems]
    assert set(letters) == set("ABCD")  # the correct option is not always in one place
    assert load_gpqa(path)[0] == problems  # the same order on every load
    other = load_gpqa(path, seed=1)[0]
    assert [p["answer"] for p in other] != letters  # the seed changes the shuffle
    # the shuffle is keyed by Record ID, not by file position: reversing the file keeps each row's order
    assert load_gpqa(write_csv(tmp_path / "rev.csv", ROWS[::-1]))[0] == problems[::-1]
    assert len(load_gpqa(path, limit=2)[0]) == 2


def test_malformed_csv_names_the_column_or_row(tmp_path):
    with pytest.raises(ValueError, match=r"missing column\(s\) 'Incorrect Answer 3'"):
        load_gpqa(write_csv(tmp_path / "a.csv", ROWS, columns=GPQA_COLUMNS[:4]))
    rows = [dict(r) for r in ROWS[:3]]
    rows[1]["Correct Answer"] = "  "
    with pytest.raises(ValueError, match=r"b.csv: row 2 .*empty 'Correct Answer'"):
        load_gpqa(write_csv(tmp_path / "b.csv", rows))


@pytest.mark.parametrize("text, letter", [
    ("so the answer is \\boxed{C}", "C"), ("\\boxed{(B)}", "B"), ("\\boxed{\\text{D}}", "D"),
    ("\\boxed{A) right}", "A"),
    ("The answer is (A).", "A"), ("Answer: **C**", "C"), ("<think>\nhmm\n</think>\n<answer>\nB\n</answer>", "B"),
    ("<answer>\nThe answer is D\n</answer>", "D"), ("first \\boxed{A}, no: \\boxed{D}", "D"),
    ("the answer is A bit unclear", None), ("\\boxed{E}", None), ("\\boxed{AB}", None), ("answer is c", None),
    ("\\boxed{3}", None), ("nothing here", None), ("", None), (None, None),
])
def test_extract_choice(text, letter):
    assert extract_choice(text) == letter
    assert verify_choice(text, "C") == (letter == "C")
