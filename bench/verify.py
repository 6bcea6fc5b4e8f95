"""
verify.py against math-verify (HuggingFace's grader, used by the official GHPO code) on pairs built from the real
datasets in data/: each gold answer against equivalent rewrites of itself (variants: \\dfrac, a/b, decimals, 'x =',
reordered lists, set braces, intervals as inequalities, thousands commas, \\left( \\right), ...), against wrong
answers in its own format (n+1, a swapped fraction, a reversed tuple), against decimal approximations of exact
answers (approx10: 10 significant digits, approx3: 3), and against other problems' gold answers. Prints the
agreement rate, every disagreement, how often each side accepts each kind of pair, and verify.py's time per
call. Then the same for the hand-written kind table of tests/test_verify_kinds.py (percent words, a leading \\pm,
scaled inequalities, \\approx, labels, ratios, chains, equations up to a factor, several boxes, prose after the box,
...), which also has the right answer for every case: each disagreement is printed with the reason the two differ
(KIND_NOTES below; a new disagreement without a note is printed as UNEXPLAINED).

    pip install math-verify==0.9.0     # bench-only dependency (pulls latex2sympy2_extended; does not touch torch)
    python bench/verify.py [--limit N]

Ends with one line: verify: agreement=<x> pairs=<n> disagreements=<k> median_ms=<y> ... kinds_agreement=<z> ...
"""
import argparse
import json
import os
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import sympy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
import verify as V  # noqa: E402
from test_verify import HOSTILE, boxed as table_boxed  # noqa: E402  (code injection, power towers, deep nesting, ...)
from test_verify_kinds import CASES, NUMERIC_GOLDS, completion  # noqa: E402  (the hand-written kind table)

DATA = os.path.join(ROOT, "data")
FILES = {"math500": "math500_test.jsonl", "gsm8k": "gsm8k_test.jsonl", "aime24": "aime24_test.jsonl",
         "amc23": "amc23_test.jsonl", "minerva": "minerva_math_test.jsonl", "olympiadbench": "olympiadbench_test.jsonl"}


def golds(dataset, limit):
    with open(os.path.join(DATA, FILES[dataset]), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:limit]
    return [g for g in (V.gold_answer(r, dataset) for r in rows) if g is not None]


def variants(gold):
    """Rewrites of a gold answer that keep its value (each rule is value-preserving by construction)."""
    g = gold.strip().strip("$") if gold.count("$") == 2 else gold
    out = []
    if "\\frac" in g:
        out.append(g.replace("\\frac", "\\dfrac"))
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", g)
    if m:
        out.append(f"{m.group(1)}{m.group(2)}/{m.group(3)}")
        p, q = int(m.group(2)), int(m.group(3))
        if q and all(f in (2, 5) for f in _factors(q)) and len(str(p * 10 ** 8 // q)) < 15:
            out.append(m.group(1) + _decimal(p, q))
    if re.fullmatch(r"-?\d+", g):
        n = int(g)
        out += [f"{n}.0", f"x = {n}"]
        if abs(n) >= 1000:
            out.append(f"{n:,}")
        if g.lstrip("-").startswith("0") and n != 0:
            out.append(str(n))  # AIME's 025 written 25
    if re.fullmatch(r"-?\d+\.\d+", g):
        out.append(g + "0")
    if re.search(r"\\sqrt\{\d+\}", g):
        out.append(re.sub(r"\\sqrt\{(\d+)\}", r"(\1)^{1/2}", g))
        if not re.search(r"\d\s*\\sqrt", g):  # without parentheses only where no digit comes before
            out.append(re.sub(r"\\sqrt\{(\d+)\}", r"\1^{1/2}", g))
    if g.startswith("(") and g.endswith(")") and g.count("(") == 1:
        out.append("\\left" + g[:-1] + "\\right)")
    parts = [p.strip() for p in g.split(",")]
    if len(parts) > 1 and not re.search(r"[()\[\]{}]|\d,\\!|\d,\d{3}\b", g):  # a list (not 58,500)
        out.append(", ".join(reversed(parts)))
        out.append("\\{" + ", ".join(parts) + "\\}")
    m = re.fullmatch(r"\((-?\d+),\s*\\infty\)|\[(-?\d+),\s*\\infty\)"
                     r"|\(-\\infty,\s*(-?\d+)\)|\(-\\infty,\s*(-?\d+)\]", g)
    if m:  # an interval as an inequality
        op, bound = [("x > ", m.group(1)), ("x \\ge ", m.group(2)), ("x < ", m.group(3)), ("x \\le ", m.group(4))][
            [i for i in range(4) if m.group(i + 1) is not None][0]]
        out.append(op + bound)
    if "+" in g and "," not in g and "=" not in g and "(" not in g and "{" not in g:
        a, b = g.split("+", 1)
        if a.strip() and b.strip() and "-" not in b:
            out.append(f"{b.strip()} + {a.strip()}")  # a + b -> b + a
    m = re.fullmatch(r"\\text\{(\w+)\}", g)
    if m:
        out.append(m.group(1))
    return [v for v in out if v != gold]


def _factors(q):
    f, d = [], 2
    while d * d <= q:
        while q % d == 0:
            f.append(d)
            q //= d
        d += 1
    return f + ([q] if q > 1 else [])


def _decimal(p, q):
    whole, rest = divmod(p, q)
    digits = ""
    while rest and len(digits) < 20:
        rest *= 10
        digits += str(rest // q)
        rest %= q
    return f"{whole}.{digits}" if digits else str(whole)


def approximations(gold, digits):
    """The value of an exact, irrational or non-terminating gold answer as a decimal with `digits` significant
    digits (10 should be accepted, 3 should not)."""
    s, _ = V.normalize(gold)
    parsed = V._parse_normalized(s)
    x = parsed.value if parsed is not None and not parsed.has_decimal else None
    if not V._is_expr(x) or x.free_symbols or x.is_Integer:
        return []
    value = complex(sympy.N(x, 30))
    if value.imag != 0 or value.real == 0 or (x.is_Rational and set(_factors(x.q)) <= {2, 5}):
        return []  # complex, underflowing, or a terminating decimal (its rounding would be exact or wrong)
    mant, _, exp = f"{value.real:.{digits}g}".partition("e")
    return [mant if not exp else f"{mant} \\times 10^{{{int(exp)}}}"]


def wrong_answers(gold):
    """Answers in the gold's own format that are wrong."""
    g = gold.strip().strip("$") if gold.count("$") == 2 else gold
    out = []
    if re.fullmatch(r"-?\d+", g):
        out.append(str(int(g) + 1))
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", g)
    if m and m.group(2) != m.group(3):
        out.append(f"{m.group(1)}\\frac{{{m.group(3)}}}{{{m.group(2)}}}")
    m = re.fullmatch(r"\((-?\d+),\s*(-?\d+)\)", g)
    if m and m.group(1) != m.group(2):
        out.append(f"({m.group(2)}, {m.group(1)})")
    return out


def boxed(answer):
    return f"Let me think step by step.\nSo the answer is $\\boxed{{{answer}}}$."


# why verify.py and math-verify 0.9.0 differ on a case of the kind table; "stricter" marks a deliberate difference
# where verify.py rejects what math-verify accepts (a false positive costs more than a false negative in RL)
_UP_TO_SIGN = "math-verify compares inequalities only up to sign, not up to a positive factor"
_MULTIPLICITY = "stricter: math-verify makes lists sets; a repeat in the gold answer is a multiplicity"
_BOXED_SPAN = "math-verify's plain \\boxed{.+} pattern spans both boxes; verify.py reads the last box"
_FINAL_COLON = "math-verify ranks 'Final answer:' (no 'is') below a box; verify.py reads it after the box"
KIND_NOTES = {
    ("40\\%", "40 percent."): "math-verify does not read the percent word before a full stop",
    ("x < 1", "2x < 2"): _UP_TO_SIGN,
    ("2x < 2", "x < 1"): _UP_TO_SIGN,
    ("x < 1", "-2x > -2"): _UP_TO_SIGN,
    ("x \\ge 3", "3x - 9 \\ge 0"): _UP_TO_SIGN,
    ("(-\\infty, 1)", "2x < 2"): "math-verify turns x < 1 into an interval, not 2x < 2",
    ("x > -\\frac{1}{2}", "4x + 2 > 0"): _UP_TO_SIGN,
    ("-1 < x < 2", "-2 < 2x < 4"): "math-verify compares the two chains part by part, not as intervals of x",
    ("x + y < 1", "2x + 2y < 2"): _UP_TO_SIGN,
    ("0.333", "\\frac13 \\approx 0.333"): "the gold is a decimal: verify.py also reads the rounded value after "
                                           "\\approx, math-verify only the exact one",
    ("6.28", "2\\pi \\approx 6.28"): "the gold is a decimal: verify.py also reads the rounded value after \\approx, "
                                      "math-verify only the exact one (6.28 is 2pi to 5e-4)",
    ("\\frac{22}{7}", "\\frac{22}{7} \\simeq 3.14"): "math-verify reads the value after \\simeq (3.14), not 22/7",
    ("5", "x + y = 5"): "stricter: math-verify takes the right side of any equation; verify.py only after a name or "
                        "label (x + y = 5 does not say what x is)",
    ("5", "2x = 5"): "stricter: math-verify takes the right side of any equation; 2x = 5 says x = 5/2",
    ("5", "x^2 = 5"): "stricter: math-verify takes the right side of any equation; x^2 = 5 says x = sqrt 5",
    ("1:2:3", "2:4:6"): "math-verify reads a:b:c as (a/b)/c, so proportional three-part ratios differ",
    ("2:3", "4 \\colon 6"): "math-verify reads 4 \\colon 6 as 6",
    ("1:2:3", "1:3:2"): "stricter: math-verify reads a:b:c as (a/b)/c, and (1/2)/3 = (1/3)/2",
    ("7", "a_3 = 7 + d"): "stricter: math-verify drops a trailing d (as in dx) and reads 7",
    ("\\begin{pmatrix}a&b\\\\c&d\\end{pmatrix}", "\\left[\\begin{array}{cc}a&b\\\\c&d\\end{array}\\right]"):
        "math-verify does not match matrices of symbols across environments (pmatrix vs bmatrix fails too)",
    ("\\begin{pmatrix}2&-1\\\\1&3\\end{pmatrix}",
     "\\left[\\begin{array}{c|c}2 & -1\\\\1 & 3\\end{array}\\right]"):
        "math-verify does not parse an array whose column spec has a rule (c|c)",
    ("1234567", "1 {,} 234 {,} 567"): "math-verify reads {,} only without spaces around it",
    ("14\\,916", "14916"): "math-verify does not read \\, as a thousands separator",
    ("2, 2", "2"): _MULTIPLICITY,
    ("1, 2, 2", "1, 2"): _MULTIPLICITY,
    ("2", "First guess \\boxed{1}. Checking again, the answer is \\boxed{2}."): _BOXED_SPAN,
    ("7", "I first got \\boxed{5}, but that fails; it is \\boxed{7}."): _BOXED_SPAN,
    ("(1,2)", "$\\boxed{1}$, $\\boxed{2}$"): "stricter: math-verify lets a set of boxes match a tuple; an ordered "
                                             "pair is not a list of solutions",
    ("7", "\\boxed{5}\nFinal answer: \\(7\\)"): _FINAL_COLON,
    ("5", "\\boxed{5}\nFinal answer: \\(7\\)"): _FINAL_COLON,
    ("(-\\infty, 5)", "so $x < 5$"): "math-verify does not compare a predicted inequality with an interval",
    ("5", "so x < 5"): "stricter: math-verify takes the last number; verify.py does not take a number out of an "
                       "inequality",
}


def kind_table(mv_parse, mv_verify):
    """verify.py and math-verify on the kind table: agreement, each side against the table's answers, and every
    disagreement with its reason."""
    rows = CASES + [("numeric_gold", g, a, s) for g, a, s in NUMERIC_GOLDS]
    agree, right, mv_right, lines, per_kind, ms = 0, 0, 0, [], {}, []
    for kind, gold, answer, same in rows:
        text = table_boxed(answer) if kind == "numeric_gold" else completion(kind, answer)
        t = time.perf_counter()
        ours = V.verify(text, gold)
        ms.append((time.perf_counter() - t) * 1e3)
        try:
            theirs = bool(mv_verify(mv_parse("\\boxed{" + V._gold_text(gold) + "}"), mv_parse(text)))
        except Exception:
            theirs = False
        k = per_kind.setdefault(kind, [0, 0])
        k[0] += ours == theirs
        k[1] += 1
        agree += ours == theirs
        right += ours == same
        mv_right += theirs == same
        if ours != theirs:
            note = KIND_NOTES.get((gold, answer), "UNEXPLAINED")
            lines.append(f"  [{kind}] gold={gold!r} answer={answer!r} verify.py={ours} math-verify={theirs} "
                         f"(right: {same}): {note}")
    print(f"kind table ({len(rows)} hand-written cases, tests/test_verify_kinds.py): agreement {agree}/{len(rows)}; "
          f"right by the table: verify.py {right}, math-verify {mv_right}")
    print("  " + ", ".join(f"{kind} {a}/{n}" for kind, (a, n) in per_kind.items()))
    print(f"kind-table disagreements ({len(lines)}):")
    print("\n".join(lines))
    return agree, len(rows), right, mv_right, sum("UNEXPLAINED" in s for s in lines), statistics.median(ms)


def hostile_max_ms():
    """Slowest verify() call on the hostile inputs, bare and boxed."""
    worst = 0.0
    for text in HOSTILE:
        for completion in (text, boxed(text)):
            t = time.perf_counter()
            assert V.verify(completion, "42") is False
            worst = max(worst, (time.perf_counter() - t) * 1e3)
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="rows per dataset (default: all; gsm8k capped at 300)")
    args = ap.parse_args()
    try:
        from math_verify import parse as mv_parse, verify as mv_verify
    except ImportError:
        sys.exit("bench/verify.py needs math-verify: pip install math-verify==0.9.0")

    pairs = []  # (dataset, kind, gold, answer)
    for dataset in FILES:
        limit = args.limit or (300 if dataset == "gsm8k" else None)
        gs = golds(dataset, limit)
        for i, g in enumerate(gs):
            pairs += [(dataset, "variant", g, v) for v in variants(g)]
            pairs += [(dataset, "wrong", g, w) for w in wrong_answers(g)]
            pairs += [(dataset, "approx10", g, a) for a in approximations(g, 10)]
            pairs += [(dataset, "approx3", g, a) for a in approximations(g, 3)]
            pairs.append((dataset, "other", g, gs[(i + 1) % len(gs)]))

    agree, disagreements, ours_ms, cold_ms, theirs_ms = 0, [], [], [], []
    accepted = {}  # kind -> [ours accepted, theirs accepted, count]
    for dataset, kind, gold, answer in pairs:
        completion = boxed(answer)
        V._parse_normalized.cache_clear()  # cold: both answers parsed from scratch
        t = time.perf_counter()
        V.verify(completion, gold)
        cold_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()  # warm: the gold answer's parse is cached, as in training (G samples per problem)
        ours = V.verify(completion, gold)
        ours_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        try:
            theirs = bool(mv_verify(mv_parse("\\boxed{" + gold.replace("$", "") + "}"), mv_parse(completion)))
        except Exception as e:  # math-verify raising is counted as a rejection
            theirs = False
            print(f"math-verify raised {type(e).__name__} on {gold!r} / {answer!r}")
        theirs_ms.append((time.perf_counter() - t) * 1e3)
        a = accepted.setdefault(kind, [0, 0, 0])
        a[0] += ours
        a[1] += theirs
        a[2] += 1
        if ours == theirs:
            agree += 1
        else:
            disagreements.append((dataset, kind, gold, answer, ours, theirs))

    print(f"{len(pairs)} pairs from {', '.join(FILES)}")
    for kind, (o, t, n) in accepted.items():
        print(f"  {kind:8} n={n:5}  accepted by verify.py {o / n:.3f}  by math-verify {t / n:.3f}")
    print(f"disagreements ({len(disagreements)}):")
    for dataset, kind, gold, answer, ours, theirs in disagreements:
        print(f"  [{dataset}/{kind}] gold={gold!r} answer={answer!r} verify.py={ours} math-verify={theirs}")
    with open(os.path.join(DATA, FILES["math500"]), encoding="utf-8") as f:
        math500 = [json.loads(line) for line in f]
    self_ok = sum(V.verify(boxed(r["answer"]), r["answer"]) for r in math500)
    solution_ok = sum(V.verify(r["solution"], r["answer"]) for r in math500)
    print(f"MATH-500: gold vs itself {self_ok}/{len(math500)}, gold vs its solution's last box "
          f"{solution_ok}/{len(math500)}")
    k_agree, k_n, k_right, k_mv_right, k_unexplained, k_ms = kind_table(mv_parse, mv_verify)
    main_ms = hostile_max_ms()
    with ThreadPoolExecutor(1) as pool:  # no SIGALRM in a worker thread: the deadline checks alone
        thread_ms = pool.submit(hostile_max_ms).result()
    print(f"hostile inputs ({len(HOSTILE)}, bare and boxed): slowest {main_ms:.1f} ms (main thread), "
          f"{thread_ms:.1f} ms (worker thread); TIME_LIMIT_S={V.TIME_LIMIT_S}")
    q = statistics.quantiles(ours_ms, n=100)
    print(f"verify.py ms per call: median {statistics.median(ours_ms):.3f} (gold cached), "
          f"{statistics.median(cold_ms):.3f} (cold), p99 {q[98]:.3f}, max {max(ours_ms + cold_ms):.1f}; "
          f"math-verify median {statistics.median(theirs_ms):.3f}")
    print(f"verify: agreement={agree / len(pairs):.4f} pairs={len(pairs)} disagreements={len(disagreements)} "
          f"median_ms={statistics.median(ours_ms):.3f} median_cold_ms={statistics.median(cold_ms):.3f} "
          f"p99_ms={q[98]:.3f} mathverify_median_ms={statistics.median(theirs_ms):.3f} "
          f"math500_solution={solution_ok}/{len(math500)} hostile_max_ms={max(main_ms, thread_ms):.1f} "
          f"kinds_agreement={k_agree / k_n:.4f} kinds_cases={k_n} kinds_right={k_right / k_n:.4f} "
          f"kinds_mathverify_right={k_mv_right / k_n:.4f} kinds_unexplained={k_unexplained} "
          f"kinds_median_ms={k_ms:.3f}")


if __name__ == "__main__":
    main()
