"""verify.py: extraction, gold answers, equivalence (a hand-checked table in the datasets' formats), MATH-500 golds,
and hostile model output (code injection, power towers, deep nesting, huge inputs, odd unicode)."""
import builtins
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sympy.parsing.sympy_parser

import verify as verify_module
from verify import extract_answer, gold_answer, is_parseable, verify

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


def rows(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def boxed(answer):
    return f"Some reasoning first, 2 + 2 = 4.\nSo the final answer is $\\boxed{{{answer}}}$."


# (gold answer as the dataset writes it, model answer, equivalent?) -- each checked by hand
PAIRS = [
    # MATH / MATH-500 golds
    (r"\frac{14}{3}", "14/3", True),
    (r"\frac{14}{3}", r"\dfrac{14}{3}", True),
    (r"\frac{14}{3}", r"4\frac{2}{3}", True),  # mixed number
    (r"\frac{14}{3}", "4.666667", True),  # 7 significant digits of an exact answer
    (r"\frac{14}{3}", "4.67", False),  # 3 digits are not enough for an exact answer
    (r"\frac{14}{3}", r"\frac{3}{14}", False),
    (r"3\sqrt{13}", r"\sqrt{117}", True),
    (r"3\sqrt{13}", r"3\sqrt{31}", False),
    (r"3\sqrt{13}", "3*sqrt(13)", True),  # plain-text math
    ("6 - 5i", "6-5i", True),
    ("6 - 5i", "-5i+6", True),
    ("6 - 5i", "6+5i", False),
    ("x=5", "5", True),
    ("x=5", "x = 5", True),
    ("5", "x=5", True),
    ("x=5", "y=5", False),  # two equations about different variables
    ("x=5", "x=-5", False),
    ("1,-2", "-2, 1", True),  # "enter all solutions": unordered
    ("1,-2", r"\{1,-2\}", True),
    ("1,-2", "1", False),
    ("1,-2", "1, -2, 3", False),
    ("1,-2", "(1,-2)", False),  # an ordered pair is not a list of solutions
    ("52_8", "52_{8}", True),
    ("52_8", "42", False),  # the question asks for base 8
    (r"11\sqrt2", r"11\sqrt{2}", True),
    (r"11\sqrt2", r"\sqrt{242}", True),
    ("3, 5, 7", "7,5,3", True),
    ("3, 5, 7", "3,5", False),
    ("1.25", r"\frac{5}{4}", True),
    ("1.25", "1.250", True),
    ("1.25", "1.2", False),
    ("x^5 - x^4 + x^3 - x^2 + x - 1", "(x-1)(x^4+x^2+1)", True),
    ("x^5 - x^4 + x^3 - x^2 + x - 1", "x^5 - x^4 + x^3 - x^2 + x + 1", False),
    (r"-\frac{\pi}{6}", r"-\pi/6", True),
    (r"-\frac{\pi}{6}", r"\frac{-\pi}{6}", True),
    (r"-\frac{\pi}{6}", r"-30^\circ", False),  # degrees are not radians
    ("0.15", r"\frac{3}{20}", True),
    ("0.15", "0.16", False),
    ("(6,31,-1)", "(6, 31, -1)", True),
    ("(6,31,-1)", r"\left(6,31,-1\right)", True),
    ("(6,31,-1)", "(6,-1,31)", False),  # tuples are ordered
    ("x^3+3x-6", "3x + x^3 - 6", True),
    ("x^3+3x-6", "x^3+3x+6", False),
    (r"\frac{3\sqrt{3}}{4}", r"\frac{3}{4}\sqrt{3}", True),
    (r"\frac{3\sqrt{3}}{4}", r"\frac{9}{4\sqrt{3}}", True),
    (r"\frac{3\sqrt{3}}{4}", r"\frac{3\sqrt{3}}{2}", False),
    (r"\cot x", r"\frac{\cos x}{\sin x}", True),
    (r"\cot x", r"\frac{1}{\tan x}", True),
    (r"\cot x", r"\tan x", False),
    (r"1 \pm \sqrt{19}", r"1+\sqrt{19}, 1-\sqrt{19}", True),
    (r"1 \pm \sqrt{19}", r"1 \mp \sqrt{19}", True),
    (r"1 \pm \sqrt{19}", r"1+\sqrt{19}", False),  # only one of the two
    ("2k+2", "2(k+1)", True),
    ("2k+2", "2k+1", False),
    ("2k+2", "2n+2", False),
    (r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}",
     r"\begin{pmatrix} -\frac{1}{3} \\ \frac{2}{3} \\ \frac{5}{3} \end{pmatrix}", True),
    (r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}", r"\left(-\frac13, \frac23, \frac53\right)", True),
    (r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}", r"\begin{pmatrix} 2/3 \\ -1/3 \\ 5/3 \end{pmatrix}", False),
    (r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}", r"\begin{bmatrix}-1&0\\0&-1\end{bmatrix}", True),
    (r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}", r"\begin{pmatrix} -1 & 0 \\ 0 & 1 \end{pmatrix}", False),
    (r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}", "(-1, 0, 0, -1)", False),  # a 2x2 matrix is not a 4-tuple
    ("(a+5)(b+2)", "(b+2)(a+5)", True),
    ("(a+5)(b+2)", "ab+2a+5b+10", True),
    ("(a+5)(b+2)", "(a+2)(b+5)", False),
    ("(3,4]", "(3, 4]", True),
    ("(3,4]", r"3 < x \le 4", True),
    ("(3,4]", "(3,4)", False),
    ("(3,4]", "[3,4]", False),
    (r"(-\infty, 0]", r"x \le 0", True),
    (r"(-\infty, 0]", r"[-\infty, 0]", True),  # a bracket at infinity is a slip, not a different set
    (r"(-\infty, 0]", "x < 0", False),
    (r"(2,\infty)", "x>2", True),
    (r"(2,\infty)", r"x \geq 2", False),
    (r"(-\infty, 2) \cup (3, \infty)", r"(3,\infty)\cup(-\infty,2)", True),
    (r"(-\infty, 2) \cup (3, \infty)", r"(-\infty, 2] \cup (3, \infty)", False),
    (r"(-\infty, 2) \cup (3, \infty)", r"(-\infty, 3) \cup (2, \infty)", False),
    (r"x \in [-2,7]", "[-2,7]", True),
    (r"x \in [-2,7]", r"-2 \le x \le 7", True),
    (r"x \in [-2,7]", "[-2,7)", False),
    (r"\left(\frac{3}{5},\frac{8}{3}\right]", "(0.6, 8/3]", True),
    ("4210_{5}", "4210_5", True),
    (r"\text{(C)}", "C", True),
    (r"\text{(C)}", "(C)", True),
    (r"\text{(C)}", r"\textbf{(C)}", True),
    (r"\text{(C)}", "B", False),
    (r"\text{Evelyn}", "Evelyn", True),
    (r"\text{Evelyn}", "evelyn", True),
    (r"\text{Evelyn}", "Navin", False),
    (r"\text{even}", "even", True),
    (r"\text{even}", r"\text{odd}", False),
    (r"\text{east}", "East", True),
    (r"5.4 \text{ cents}", "5.4", True),
    (r"5.4 \text{ cents}", "5.4 cents", True),
    (r"5.4 \text{ cents}", "54", False),
    (r"15\mbox{ cm}^2", "15", True),
    (r"15\mbox{ cm}^2", r"15 \text{ cm}^2", True),
    (r"15\mbox{ cm}^2", "225", False),
    (r"10,\!080", "10080", True),
    (r"10,\!080", "10,080", True),
    (r"10,\!080", "10800", False),
    (r"11,\! 111,\! 111,\! 100", "11111111100", True),
    (r"\$32,\!348", "32348", True),
    (r"\$18.90", "18.9", True),
    (r"\$18.90", r"\$18.09", False),
    (r"106^\circ", "106", True),
    (r"106^\circ", r"106^{\circ}", True),
    (r"106^\circ", "106\u00b0", True),  # a unicode degree sign
    (r"106^\circ", r"74^\circ", False),
    (".0000672", r"6.72 \times 10^{-5}", True),
    (".0000672", "0.000672", False),
    (r"\frac{270}7\text{ degrees}", r"\frac{270}{7}", True),
    (r"\frac{1}{3}", "0.3333333", True),
    (r"\frac{1}{3}", "0.333", False),
    (r"\frac{1}{3}", r"0.\overline{3}", True),  # a repeating decimal is exact
    (r"(-\sqrt{3}, \sqrt{3})", "(-1.732, 1.732)", False),
    (r"\{1\pm\sqrt{5},-2\}", r"-2, 1+\sqrt5, 1-\sqrt5", True),
    (r"\{1\pm\sqrt{5},-2\}", r"1+\sqrt5, 1-\sqrt5", False),
    ("p - q", "-(q-p)", True),
    ("p - q", "q - p", False),
    ("y = 2x + 3", "2x+3", True),
    ("y = 2x + 3", "y=3+2x", True),
    ("y = 2x + 3", "2x - y + 3 = 0", True),
    ("y = 2x + 3", "y = 3x + 2", False),
    ("5x - 7y + 11z + 4 = 0", "-5x + 7y - 11z - 4 = 0", True),
    ("5x - 7y + 11z + 4 = 0", "5x-7y+11z=-4", True),
    ("5x - 7y + 11z + 4 = 0", "5x - 7y + 11z - 4 = 0", False),
    ("5x - 7y + 11z + 4 = 0", "10x - 14y + 22z + 8 = 0", True),  # the same plane: equations equal up to a factor
    (r"137 \frac{1}{2}", "137.5", True),
    (r"137 \frac{1}{2}", r"\frac{275}{2}", True),
    (r"137 \frac{1}{2}", "68.5", False),  # 137 * 1/2 is not what a mixed number means
    (r"2\sqrt{5}", r"\sqrt{20}", True),
    (r"2\sqrt{5}", "4.472136", True),
    (r"2\sqrt{5}", "4.47", False),
    (r"\frac{20000}{\pi}", r"20000/\pi", True),
    (r"\frac{20000}{\pi}", "6366", False),
    (r"\frac 34", "0.75", True),
    (r"\frac9{19}", r"\frac{9}{19}", True),
    (r"\sqrt{53}", r"53^{1/2}", True),
    (r"\sqrt{53}", r"\sqrt{35}", False),
    ("3R^2", "3r^2", False),  # case matters in math answers
    # GSM8K golds (after '####')
    ("18", "18", True),
    ("18", r"\$18.00", True),
    ("18", "18 dollars", True),
    ("18", "18.0", True),
    ("18", "18.5", False),
    ("18", "-18", False),
    ("1000", "1,000", True),
    ("1000", "1 000", True),
    ("1450000", "1,450,000", True),
    ("1450000", "145,000", False),
    ("5", r"5\%", True),
    # AIME golds: strings with leading zeros
    ("025", "25", True),
    ("025", "025", True),
    ("025", "52", False),
    ("073", "73", True),
    ("204", "2040", False),
    # AMC23 golds: floats written as integers by gold_answer
    ("27", "27.0", True),
    ("27", r"\frac{54}{2}", True),
    ("27", "26.99", False),  # an integer answer is matched exactly
    ("27", "26.9999999", False),
    # OlympiadBench golds ($-wrapped, lists)
    (r"$\frac{1}{2 n+2}$", r"\frac{1}{2(n+1)}", True),
    (r"$\frac{1}{2 n+2}$", r"\frac{1}{2n+1}", False),
    ("$2^{1009}$", "2^{1009}", True),
    ("$2^{1009}$", r"2 \cdot 4^{504}", True),
    ("$2^{1009}$", "2^{1008}", False),
    ("$(1,8,19), (2,7,13), (4,5,7)$", "(4,5,7), (1,8,19), (2,7,13)", True),
    ("$(1,8,19), (2,7,13), (4,5,7)$", "(1,8,19), (2,7,13)", False),
    ("$(1,8,19), (2,7,13), (4,5,7)$", "(8,1,19), (2,7,13), (4,5,7)", False),
    (r"$\binom{2n}{n}$", r"\frac{(2n)!}{(n!)^2}", True),
    (r"$\binom{2n}{n}$", r"\binom{2n}{2}", False),
    (r"$m n-\lfloor m / 2\rfloor$", r"mn - \left\lfloor \frac{m}{2} \right\rfloor", True),
    (r"$m n-\lfloor m / 2\rfloor$", r"mn - \lceil m/2 \rceil", False),
    ("$f(x)=2 x$", "2x", True),
    ("$f(x)=2 x$", "f(x) = 2x", True),
    ("$f(x)=2 x$", "f(x)=x", False),
    ("$69$,$84$", "84, 69", True),
    ("$69$,$84$", "69", False),
    (r"$k \geqslant 2$", r"k \ge 2", True),
    (r"$k \geqslant 2$", r"[2, \infty)", True),
    (r"$k \geqslant 2$", "k > 2", False),
    (r"$(-\infty, 0) \cup\{1\}$.", r"\{1\} \cup (-\infty, 0)", True),
    (r"$(-\infty, 0) \cup\{1\}$.", r"(-\infty, 0]", False),
    ("62.5%", "62.5", True),
    ("62.5%", r"62.5\%", True),
    ("62.5%", "0.625", True),
    ("62.5%", "6.25", False),
    (r"$8 \%$", "0.08", True),
    (r"$\frac{\log 2}{\log 2-\log 3}$", r"\frac{\ln 2}{\ln(2/3)}", True),
    (r"$\frac{\log 2}{\log 2-\log 3}$", r"\log_{2/3} 2", True),
    (r"$\frac{\log 2}{\log 2-\log 3}$", r"\frac{\log 3}{\log 2-\log 3}", False),
    (r"$a=2$, $a=-6-4 \sqrt{2}$", r"2, -6-4\sqrt{2}", True),
    (r"$a=2$, $a=-6-4 \sqrt{2}$", "2", False),
    (r"$\frac{1}{6} \pi, \frac{5}{6} \pi, \frac{1}{4} \pi, \frac{3}{4} \pi$",
     r"\frac{\pi}{4}, \frac{3\pi}{4}, \frac{\pi}{6}, \frac{5\pi}{6}", True),
    (r"$\frac{100!}{2^{50}}$", r"\frac{100!}{2^{50}}", True),
    (r"$\frac{100!}{2^{50}}$", r"\frac{100!}{2^{49}}", False),
    (r"$18.8^{\circ}$", "18.80", True),
    (r"$18.8^{\circ}$", "18.9", False),
    (r"$\frac{8}{\sqrt[3]{7}}$", r"\frac{8\sqrt[3]{49}}{7}", True),
    (r"$M=\frac{9}{32} \sqrt{2}$", r"\frac{9\sqrt2}{32}", True),
    (r"$m_{\max }=n^{2}-n-1$", "n^2-n-1", True),
    (r"$(22+8 \sqrt{6}, 22-8 \sqrt{6})$,$(22-8 \sqrt{6}, 22+8 \sqrt{6})$",
     r"(22-8\sqrt6, 22+8\sqrt6), (22+8\sqrt6, 22-8\sqrt6)", True),
    (r"$(22+8 \sqrt{6}, 22-8 \sqrt{6})$,$(22-8 \sqrt{6}, 22+8 \sqrt{6})$", r"(22+8\sqrt6, 22-8\sqrt6)", False),
    (r"$2,-\log _{10} 250$", r"2, -\log_{10}(250)", True),
    (r"$2,-\log _{10} 250$", r"2, -2-\log_{10} 2.5", True),
    (r"$2,-\log _{10} 250$", r"2, \log_{10} 250", False),
    # Minerva golds (last \boxed of the solution)
    ("4.5e33", r"4.5 \times 10^{33}", True),
    ("4.5e33", "4.5e33", True),
    ("4.5e33", r"4.6 \times 10^{33}", False),
    ("4.5e33", r"4.5 \times 10^{32}", False),
    ("1.6", "1.60", True),
    ("1.6", "1.7", False),
    ("np.arcsin(10/13)", r"\arcsin(10/13)", True),
    ("np.arcsin(10/13)", r"\sin^{-1}\left(\frac{10}{13}\right)", True),
    ("np.arcsin(10/13)", r"\arccos(10/13)", False),
    ("-1./3", r"-\frac{1}{3}", True),
    ("-1./3", "-0.33", False),
    (r"\frac{a M^{1 / 3}}{G M^{2 / 3}+b}", r"\frac{a}{G M^{1/3} + b M^{-1/3}}", True),
    (r"\frac{a M^{1 / 3}}{G M^{2 / 3}+b}", r"\frac{a M^{2/3}}{G M^{1/3}+b}", False),
    (r"\frac{1}{s+a}", "(s+a)^{-1}", True),
    (r"\frac{1}{s+a}", r"\frac{1}{s-a}", False),
    (r"\sqrt{2} \cos (2 t-\pi / 4)", r"\cos(2t) + \sin(2t)", True),
    (r"\sqrt{2} \cos (2 t-\pi / 4)", r"\cos(2t) - \sin(2t)", False),
    ("e^{t} / 3", r"\frac{e^t}{3}", True),
    ("e^{t} / 3", r"\frac{1}{3}\exp(t)", True),
    ("e^{t} / 3", "3e^{-t}", False),
    (r"\ln 2 + i\pi / 3", r"\log 2 + \frac{\pi i}{3}", True),
    (r"2 \pi / \omega", r"\frac{2\pi}{\omega}", True),
    ("MR=SRMC", "SRMC = MR", True),
    ("SRAC=LRAC", "SRMC=LRMC", False),
    ("E_{1},E_{2}", "E_2, E_1", True),
    (r"1+\sqrt{3} i", r"1 + i\sqrt{3}", True),
    (r"1+\sqrt{3} i", r"2e^{i\pi/3}", True),
    (r"1+\sqrt{3} i", r"2e^{i\pi/6}", False),
    (r"\frac{4 A}{3+3 i} e^{i t}", r"\frac{2A(1-i)}{3} e^{it}", True),
    (r"\frac{d x}{d t}=k x-a", r"\frac{dx}{dt} = kx - a", True),
    (r"\frac{d x}{d t}=k x-a", r"\frac{dx}{dt} = kx + a", False),
]


@pytest.mark.parametrize("gold,answer,same", PAIRS)
def test_pairs(gold, answer, same):
    assert verify(boxed(answer), gold) is same


def test_extract_answer():
    assert extract_answer(r"so $x = \boxed{\frac{1}{2}}$.") == r"\frac{1}{2}"
    assert extract_answer(r"\boxed{\{1,2\}}") == r"\{1,2\}"  # escaped braces do not close the box
    assert extract_answer(r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}") == r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"
    assert extract_answer(r"first \boxed{1}, then \boxed{2}") == "2"  # the last box
    assert extract_answer(r"\fbox{3}") == "3"
    assert extract_answer(r"the answer is $\boxed 5$") == "5"
    assert extract_answer(r"\boxed{7} and then a truncated \boxed{\frac{1}{") == "7"
    assert extract_answer("She pays 3 * 4 = 12.\n#### 1,234\n") == "1,234"
    assert extract_answer("so the answer is 42. Done") == "42"
    assert extract_answer("we get 3 apples, then 17 pears") == "17"  # fallback: the last number
    assert extract_answer("no numbers here") is None
    assert extract_answer("") is None
    assert extract_answer(r"\boxed{}") is None
    assert extract_answer(None) is None


def test_verify_completion_forms():
    assert verify(r"... therefore $\boxed{\dfrac{1}{2}}$", "\\frac12")
    assert verify("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72")
    assert verify("The answer is 72.", "72")
    assert not verify("The answer is 71.", "72")
    assert verify(r"\boxed{3}", r"\boxed{3}")  # a gold answer given boxed is unwrapped
    assert not verify(r"\boxed{3}", "")  # an empty gold answer never scores
    assert not verify(r"\boxed{3}", "   ")
    assert not verify("", "3")
    assert not verify(None, "3") and not verify(3, 3)  # a completion that is not text scores False


def test_gold_answer_per_dataset():
    assert gold_answer(rows("math500_test.jsonl")[0], "math500") == r"\left( 3, \frac{\pi}{2} \right)"
    assert gold_answer({"problem": "p", "solution": r"so \boxed{\frac{1}{2}}."}, "math") == r"\frac{1}{2}"
    gsm = rows("gsm8k_test.jsonl")
    assert gold_answer(gsm[0], "gsm8k") == "18"
    assert gold_answer({"question": "q", "answer": "so\n#### 1,450,000"}, "gsm8k") == "1450000"
    aime = {r["id"]: r for r in rows("aime24_test.jsonl")}
    assert [gold_answer(r, "aime24") for r in aime.values()].count("025") == 1  # kept as written
    amc = rows("amc23_test.jsonl")
    assert amc[0]["answer"] == 27.0 and gold_answer(amc[0], "amc23") == "27"
    ob = rows("olympiadbench_test.jsonl")
    assert gold_answer(ob[1], "olympiadbench") == r"$\frac{1}{2 n+2}$"
    assert gold_answer({"final_answer": ["$69$", "$84$"]}, "olympiadbench") == "$69$, $84$"
    minerva = rows("minerva_math_test.jsonl")
    assert gold_answer(minerva[1], "minerva") == "4.5e33"
    # empty or unparseable gold answers are reported as None, not scored
    assert gold_answer({"problem": "p", "solution": r"\boxed{}", "answer": ""}, "math") is None
    assert gold_answer({"final_answer": ["$t(0,4]$"]}, "olympiadbench") is None
    assert gold_answer({"question": "q", "answer": "no marker"}, "gsm8k") is None
    with pytest.raises(ValueError, match="unknown dataset 'mathx'"):
        gold_answer({"answer": "1"}, "mathx")
    with pytest.raises(ValueError, match="'final_answer'"):
        gold_answer({"answer": "1"}, "olympiadbench")


def test_gold_answers_of_every_dataset_parse():
    """Every gold answer of the test sets is readable, except the few that are not answers (listed)."""
    files = {"math500": "math500_test.jsonl", "gsm8k": "gsm8k_test.jsonl", "aime24": "aime24_test.jsonl",
             "amc23": "amc23_test.jsonl", "minerva": "minerva_math_test.jsonl",
             "olympiadbench": "olympiadbench_test.jsonl"}
    skipped = {}
    for dataset, name in files.items():
        for row in rows(name):
            gold = gold_answer(row, dataset)
            if gold is None:
                skipped.setdefault(dataset, []).append(row.get("final_answer"))
            else:
                assert verify(boxed(gold), gold), (dataset, gold)
    # OlympiadBench: an angle statement, a prose answer with a free parameter, and '$t(0,4]$'
    assert {k: len(v) for k, v in skipped.items()} == {"olympiadbench": 3}, skipped


def test_math500_gold_against_itself_and_its_solution():
    data = rows("math500_test.jsonl")
    assert len(data) == 500
    as_self = sum(verify(boxed(r["answer"]), r["answer"]) for r in data)
    as_solution = sum(verify(r["solution"], r["answer"]) for r in data)
    # the same check without the string shortcut: the parsed value equals itself through the symbolic comparison
    parsed = [verify_module._candidates(r["answer"]) for r in data]
    symbolic = sum(bool(vals) and verify_module._equal(vals[0].value, vals[0].value, vals[0].has_decimal,
                                                       vals[0].has_decimal) for _, vals in parsed)
    text_only = sum(not vals for _, vals in parsed)
    print(f"MATH-500: gold vs itself {as_self}/500, gold vs its solution's last box {as_solution}/500, "
          f"symbolic self-equality {symbolic}/{500 - text_only} (text answers: {text_only})")
    assert as_self / 500 >= 0.995 and as_solution / 500 >= 0.995
    assert symbolic == 500 - text_only and text_only <= 5


def test_math500_gold_against_other_problems_answers():
    """Gold answers of other problems are not equivalent, unless they are the same value: 2,500 pairs (each row
    against rows i+1, i+2, i+3, i+7, i+50) and the neighbours in sorted order, where near-identical forms meet.
    The equal pairs with different text were checked by hand: units, degrees and 'x =' are dropped by design."""
    golds = [r["answer"] for r in rows("math500_test.jsonl")]
    pairs = [(golds[i], golds[(i + k) % 500]) for i in range(500) for k in (1, 2, 3, 7, 50)]
    distinct = sorted(set(golds))
    pairs += [(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1:i + 4]]
    equal = {(a, b) for a, b in pairs if a != b and verify(boxed(b), a)}
    assert equal == {("5", "x=5"), (r"10,\!080", "10080"), ("120", r"120^\circ"), ("15", r"15\mbox{ cm}^2"),
                     ("30", r"30^\circ"), ("36", r"36^\circ"), ("90", r"90^\circ")}, equal
    assert sum(a == b for a, b in pairs) < len(pairs) // 10  # mostly different problems' answers


# ---------------------------------------------------------------------------------------------------------------
# hostile model output

HOSTILE = [
    "__import__('os').system('touch /tmp/ghpo_verify_pwned')",
    "exec(\"open('/tmp/ghpo_verify_pwned','w')\")",
    "eval('1+1')",
    "lambda: __import__('os')",
    "().__class__.__base__.__subclasses__()",
    r"\boxed{\input{/etc/passwd}}",
    "9^9^9^9",
    "9^{9^{9^{9}}}",
    "10^{10^{10}}",
    "2^{2^{2^{2^{2^{2}}}}}",
    "(10^{100})!",
    "1000000!",
    "99999999999999!",
    r"\binom{10^{9}}{5000}",
    r"\sqrt{10^{3000}+1}",
    r"10^{-10^{10}}",
    r"(2x)^{10^{9}}",
    r"e^{e^{e^{e^{10}}}}",
    r"\sin(10^{10^{5}})",
    r"\frac{1}{0}",
    "0^{-1}",
    "{" * 100_000 + "1" + "}" * 100_000,
    "(" * 100_000 + "1" + ")" * 100_000,
    r"\frac{" * 50_000 + "1",
    "-" * 100_000 + "1",
    "x^" * 50_000 + "2",
    "1+" * 200_000 + "1",
    "9" * 1_000_000,
    r"\boxed{" * 100_000,
    "\u202e2\u202d",  # right-to-left override
    "\u0661\u0662",  # Arabic-Indic digits
    "\ud800",  # lone surrogate
    "\x00\x01\x02",
    "\U0001f600",
    "2\u0301",  # combining accent
    "NaN", "inf - inf", "oo", "zoo",
]


@pytest.fixture
def no_code_execution(monkeypatch):
    """Any eval/exec/compile or sympy string parsing during verify() fails the test."""
    calls = []

    def trap(name):
        def f(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called")
        return f
    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, trap(name))
    monkeypatch.setattr(sympy.parsing.sympy_parser, "parse_expr", trap("parse_expr"))
    monkeypatch.setattr(sympy.core.sympify, "parse_expr", trap("sympify-parse_expr"), raising=False)
    yield calls


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_hostile_inputs_return_false(i, no_code_execution):
    """Hostile text scores False and runs nothing (bench/verify.py times these: each well under TIME_LIMIT_S)."""
    text = HOSTILE[i]
    results = [verify(text, "42"), verify(boxed(text), "42"), verify(boxed(text), text[:1000] or "1")]
    assert results[0] is False and results[1] is False and isinstance(results[2], bool)
    assert no_code_execution == []
    assert not os.path.exists("/tmp/ghpo_verify_pwned")


def test_deadline_aborts_the_comparison(monkeypatch):
    """The deadline (checked by the parser and the evaluator, so it works in threads too) turns work into False."""
    gold, answer = "x^5 - x^4 + x^3 - x^2 + x - 1", boxed("(x-1)(x^4+x^2+1)")
    verify_module._parse_normalized.cache_clear()
    assert verify(answer, gold)
    verify_module._parse_normalized.cache_clear()
    monkeypatch.setattr(verify_module, "TIME_LIMIT_S", -1.0)  # already past the deadline when the work starts
    assert not verify(answer, gold)
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(verify, answer, gold).result() is False


def test_huge_completion_is_rejected_but_long_reasoning_is_fine():
    assert not verify("x" * 1_000_000 + r"\boxed{42}", "42")  # 1 MB: over MAX_COMPLETION_CHARS
    assert verify("x" * 50_000 + r"\boxed{42}", "42")


def test_sane_results_next_to_hostile_ones(no_code_execution):
    """A bounded power tower is still computed exactly; a huge one is refused, not approximated."""
    assert verify(boxed("2^{2^{2^{2}}}"), "65536")
    assert verify(boxed("3^{3^3}"), "7625597484987")
    assert verify(boxed("9^{9^{9}}"), "9^{9^{9}}")  # the same text
    assert not verify(boxed("9^{9^{9}}"), "9^{387420489}")  # 370 million digits: refused, not computed
    assert not verify(boxed("9^{9^{9}}"), "1")
    assert verify(boxed("1000!"), "1000!")  # string-equal
    assert verify(boxed(r"\frac{1}{2004!}"), r"\frac{1}{2004!}")


def test_verify_in_threads():
    """The deadline works without signals: worker threads get the same answers, hostile input included."""
    cases = [(boxed(a), g, same) for g, a, same in PAIRS[:40]] + [(boxed("9^9^9^9"), "42", False),
                                                                  ("(" * 100_000 + ")" * 100_000, "1", False)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: verify(c[0], c[1]), cases))
    assert got == [same for _, _, same in cases]
    assert threading.current_thread() is threading.main_thread()


def test_no_string_evaluation_in_source():
    src = open(verify_module.__file__, encoding="utf-8").read()
    for banned in ("sympify(", "parse_expr(", "eval(", "exec(", "lambdify(", "parse_latex("):
        assert banned not in src, banned


def test_is_parseable():
    for good in ["42", r"\frac{1}{2}", r"\text{Evelyn}", "3:5", r"(-\infty, 0]",
                 r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"]:
        assert is_parseable(good), good
    for bad in ["", "   ", None, r"\frac{1}{7}\triangle ABC", "$t(0,4]$", "x" * 5000,
                "$f(x)=a x+b$, where $b$ is an arbitrary integer, and $a$ is an arbitrary positive integer"]:
        assert not is_parseable(bad), bad
