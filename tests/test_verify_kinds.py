"""verify.py on the kinds of answers that the field's grader handles and verify.py once missed (issue 16): each
kind has cases that must match and near-misses that must not (a false positive is worse than a false negative).
Every case was written here by hand; bench/verify.py runs the same table through math-verify and explains where the
two differ."""
import math

import pytest

from test_verify import boxed
from verify import extract_answer, verify

WRONG_THEN_FINAL = "So \\boxed{5}. Wait, that is wrong.\nFinal Answer: The final answer is $7$. I hope it is correct."
# kind -> [(gold answer, model answer, equivalent?)]; for the kinds in WHOLE the model answer is a whole completion,
# for the others it is put in a box by completion()
KINDS = {
    "percent_words": [
        (r"28\%", "28 percent", True),
        (r"28\%", "28 per cent", True),
        (r"28\%", r"28 \text{ percent}", True),
        ("0.28", r"28\text{percent}", True),
        ("28 percent", r"28\%", True),
        ("0.28", "28 percent", True),
        ("28", "28 percent", True),
        (r"12.5\%", "12.5 percent", True),
        (r"\frac{1}{4}", "25 percent", True),
        (r"75\%", "75 pct", True),
        (r"40\%", "40 percent.", True),
        (r"28\%", "29 percent", False),
        (r"28\%", "2.8 percent", False),
        (r"28\%", "28 percentile", False),
        (r"40\%", "percent", False),
        (r"40\%", "4 percent", False),
        ("0.4", "4 percent", False),
    ],
    "leading_pm": [
        (r"\{-2021, 2021\}", r"\pm 2021", True),
        ("2021, -2021", r"\pm 2021", True),
        (r"\pm 2021", "2021, -2021", True),
        (r"\pm 2021", "-2021, 2021", True),
        (r"\pm 2021", r"\{2021, -2021\}", True),
        (r"\pm 2021", r"x = \pm 2021", True),
        (r"x = \pm 3", "3, -3", True),
        (r"\pm\sqrt{2}", r"\sqrt2, -\sqrt2", True),
        (r"\pm\frac{1}{2}", r"\pm 0.5", True),
        ("-5, 5", r"\mp 5", True),
        (r"\pm 1, \pm 3", "1, -1, 3, -3", True),
        (r"\pm 2021", "2021", False),
        (r"\pm 2021", "-2021", False),
        ("2021", r"\pm 2021", False),
        (r"\pm 2021", "2021, 2022", False),
        (r"\pm 2021", r"\pm 2020", False),
        (r"\pm\sqrt{2}", r"\pm 2", False),
        (r"\pm 1, \pm 3", r"\pm 1, 3", False),
    ],
    "inequality_factor": [
        ("x < 1", "-x > -1", True),
        ("x < 1", "2x < 2", True),
        ("2x < 2", "x < 1", True),
        ("x < 1", "-2x > -2", True),
        (r"x \ge 3", r"3x - 9 \ge 0", True),
        (r"x \ge 3", r"-x \le -3", True),
        (r"(-\infty, 1)", "2x < 2", True),
        (r"x > -\frac{1}{2}", "4x + 2 > 0", True),
        ("-1 < x < 2", "-2 < 2x < 4", True),
        ("-1 < x < 2", "2 > 1 - x > -1", True),
        ("x + y < 1", "2x + 2y < 2", True),
        ("x + y < 1", "-x - y > -1", True),
        ("x < 1", "-x < -1", False),
        ("x < 1", "-2x < -2", False),
        ("x < 1", r"2x \le 2", False),
        ("x < 1", "2x < 1", False),
        (r"x \ge 3", "3x - 9 > 0", False),
        ("x + y < 1", "-2x - 2y < -2", False),
        ("x + y < 1", "x + 2y < 1", False),
        ("-1 < x < 2", "-2 < 2x < 2", False),
    ],
    "approx": [
        (r"\frac13", r"\frac13 \approx 0.333", True),
        (r"\frac{1}{3}", r"\frac{1}{3} \approx 0.33", True),
        (r"\sqrt{2}", r"\sqrt{2} \approx 1.414", True),
        ("0.333", r"\frac13 \approx 0.333", True),  # a decimal gold answer: the rounded value counts too
        (r"2\pi", r"2\pi \approx 6.28", True),
        ("6.28", r"2\pi \approx 6.28", True),
        (r"\frac{1}{3}", r"x = \frac{1}{3} \approx 0.333", True),
        (r"\frac{1}{3}", r"x \approx 0.3333333", True),
        ("3.14", r"\approx 3.14", True),
        (r"\frac{22}{7}", r"\frac{22}{7} \simeq 3.14", True),
        (r"\frac13", r"0.5 \approx 0.333", False),
        (r"\frac13", r"x \approx 0.333", False),  # only a rounded value: 3 digits are not an exact answer
        (r"\sqrt{2}", r"\sqrt{3} \approx 1.414", False),  # the exact value stated is wrong
        (r"\frac13", r"\frac12 \approx 0.333", False),
        ("0.333", r"\frac12 \approx 0.5", False),
        (r"\sqrt{2}", "1.414", False),
    ],
    "label_equation": [
        ("(3,2)", "(p,q)=(3,2)", True),
        ("(3,2)", "(p, q) = (3, 2)", True),
        ("(p,q)=(3,2)", "(3,2)", True),
        ("1", "|AB|=1", True),
        ("|AB| = 1", "1", True),
        ("1", "A:B=1", True),
        (r"\frac{3}{2}", r"\frac{NO}{BO}=\frac32", True),
        (r"\frac{3}{2}", "NO/BO = 1.5", True),
        ("5", "f(2) = 5", True),
        (r"2\sqrt{3}", r"\overline{AB} = 2\sqrt3", True),
        ("4", "a_{10} = 4", True),
        ("(1, -1, 2)", "(x, y, z) = (1, -1, 2)", True),
        ("(3,2)", "(p,q)=(2,3)", False),
        ("(3,2)", "(p,q)=(3,2,1)", False),
        ("1", "|AB|=2", False),
        ("1", "|AB|+1=2", False),  # arithmetic on the left: an equation, not a label
        ("5", "x + y = 5", False),
        ("5", "2x = 5", False),
        ("5", "x^2 = 5", False),
        ("(p,q)=(3,2)", "(p,q) = (2,3)", False),
        (r"\frac{3}{2}", r"\frac{NO}{BO} = \frac{2}{3}", False),
        ("4", "a_{10} = 40", False),
    ],
    "ratio": [
        ("11:21", "V_1:V_2=11:21", True),
        ("V_1:V_2 = 11:21", "11:21", True),
        (r"\frac{11}{21}", "11:21", True),
        ("11:21", r"\frac{11}{21}", True),
        ("11:21", "22:42", True),
        ("1:2:3", "2:4:6", True),
        ("3:4", "0.75", True),
        ("2:3", "2 : 3", True),
        (r"1:\sqrt{3}", r"\sqrt{3}:3", True),
        ("2:3", r"4 \colon 6", True),
        ("11:21", "21:11", False),
        ("11:21", "11:20", False),
        ("1:2:3", "1:3:2", False),
        ("1:2:3", "1:2", False),
        ("1:2", "1:2:3", False),
        ("3:4", "0.7", False),
        ("2:3", "3:2", False),
        ("5:00", "6:00", False),  # a zero part (a time): compared part by part
        ("11:21", r"\frac{21}{11}", False),
    ],
    "equation_chain": [
        ("5", "x = 2+3 = 5", True),
        ("5", "2+3 = 5", True),  # a computation: no variable on the left
        (r"\frac{1}{2}", r"P = \frac{3}{6} = \frac{1}{2}", True),
        ("12", r"3 \cdot 4 = 12", True),
        ("x^2+2x+1", "y = (x+1)^2 = x^2 + 2x + 1", True),
        ("7", "a_3 = a_1 + 2d = 7", True),
        ("25", "5^2 = 25", True),
        ("10", "S = 1 + 2 + 3 + 4 = 10", True),
        (r"\sqrt{2}", r"r = \sqrt{1 + 1} = \sqrt2", True),
        ("x = 5", "x = 2 + 3 = 5", True),
        ("5", "x = 2+3 = 6", False),
        ("6", r"x = 2\cdot 3 = 5", False),
        ("5", "2 + 3 = 6", False),
        ("10", "S = 1 + 2 + 3 + 4 = 11", False),
        ("25", "5^2 = 24", False),
        ("7", "a_3 = 7 + d", False),
        ("12", r"3 \cdot 4 = 13", False),
    ],
    "equation_factor": [
        ("x^2/4 + y^2/3 = 1", "x^2/16 + y^2/12 = 1/4", True),
        ("2x+4y-3=0", r"y=-\frac12x+\frac34", True),
        (r"y=-\frac12x+\frac34", "2x+4y-3=0", True),
        ("x + y = 1", "3x + 3y = 3", True),
        ("x + y = 1", "-x - y = -1", True),
        ("y = 2x + 1", "4x - 2y + 2 = 0", True),
        (r"\frac{x^2}{9} - \frac{y^2}{16} = 1", "16x^2 - 9y^2 = 144", True),
        ("x - 2y + 3z = 4", "-2x + 4y - 6z + 8 = 0", True),
        ("y = 3x", r"x = \frac{y}{3}", True),
        ("(x-1)^2 + (y+2)^2 = 4", r"\frac{(x-1)^2 + (y+2)^2}{4} = 1", True),
        ("x^2/4 + y^2/3 = 1", "x^2/3 + y^2/4 = 1", False),
        ("x^2/4 + y^2/3 = 1", "x^2/16 + y^2/12 = 1", False),
        ("2x+4y-3=0", r"y=-\frac12x+\frac32", False),
        ("x + y = 1", "x + y = 2", False),
        ("x + y = 1", "2x + y = 2", False),
        ("y = 2x + 1", "y = 2x - 1", False),
        ("y = 3x", "y = 3x^2", False),
        ("x - 2y + 3z = 4", "x - 2y + 3z = -4", False),
    ],
    "bracket_matrix": [
        (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\left[\begin{array}{cc}1&2\\3&4\end{array}\right]", True),
        (r"\left[\begin{array}{cc}1&2\\3&4\end{array}\right]", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", True),
        (r"\left[\begin{array}{cc}1&2\\3&4\end{array}\right]", r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", True),
        (r"\begin{pmatrix}1\\-2\end{pmatrix}", r"\left[\begin{array}{c}1\\-2\end{array}\right]", True),
        (r"\begin{pmatrix}\frac12&0\\0&2\end{pmatrix}", r"\left[\begin{array}{rr}0.5&0\\0&2\end{array}\right]", True),
        (r"\begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}", r"[\begin{matrix} 1 & 0 \\ 0 & 1 \end{matrix}]", True),
        (r"\begin{pmatrix}1\\2\\3\end{pmatrix}", r"\left(\begin{array}{c}1\\2\\3\end{array}\right)", True),
        (r"\begin{pmatrix}1\\2\\3\end{pmatrix}", r"\left[\begin{array}{c}1\\2\\3\end{array}\right]", True),
        (r"\begin{pmatrix}a&b\\c&d\end{pmatrix}", r"\left[\begin{array}{cc}a&b\\c&d\end{array}\right]", True),
        (r"\begin{pmatrix}2&-1\\1&3\end{pmatrix}", r"\left[\begin{array}{c|c}2 & -1\\1 & 3\end{array}\right]", True),
        (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\left[\begin{array}{cc}1&2\\4&3\end{array}\right]", False),
        (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\left[\begin{array}{cc}1&3\\2&4\end{array}\right]", False),
        (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\left[\begin{array}{cccc}1&2&3&4\end{array}\right]", False),
        (r"\begin{pmatrix}1\\-2\end{pmatrix}", r"\left[\begin{array}{c}1\\2\end{array}\right]", False),
        (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", "[1, 2, 3, 4]", False),
        (r"\begin{pmatrix}1\\2\\3\end{pmatrix}", r"\left[\begin{array}{ccc}1&2&3\end{array}\right]", False),
        (r"\begin{pmatrix}a&b\\c&d\end{pmatrix}", r"\left[\begin{array}{cc}a&b\\d&c\end{array}\right]", False),
    ],
    "thousands_separator": [
        ("14916", "14 {, }916", True),
        ("14916", "14{,}916", True),
        ("14 {, }916", "14916", True),
        ("14{,}916", "14,916", True),
        ("1234567", "1 {,} 234 {,} 567", True),
        ("2{,}000", "2000", True),
        ("10{,}000{,}000", "10^7", True),
        ("1{,}234.5", "1234.5", True),
        (r"14\,916", "14916", True),
        ("100{,}000", "10^5", True),
        ("14916", "14 {, }961", False),
        ("14916", "1{,}4916", False),  # not a thousands grouping
        ("14916", "149 {, }16", False),
        ("2000", "2{,}00", False),
        ("1234567", "1{,}234{,}576", False),
        ("15", "1{,}5", False),
        ("14916", "14.916", False),
    ],
    "repeated_element": [
        ("(1,2),(3,4)", "(1,2),(3,4),(1,2)", True),
        ("(1,2),(3,4)", "(3,4),(1,2),(3,4)", True),
        ("1, 2", "1, 2, 2", True),
        (r"\{1, 2\}", "2, 1, 1", True),
        ("(0,0),(1,1)", "(0,0),(1,1),(0,0),(1,1)", True),
        ("-1, 3", "3, -1, 3", True),
        ("2, 5, 7", "7, 5, 2, 5", True),
        ("(2,3),(3,2)", "(2,3),(3,2),(2,3)", True),
        (r"\frac12, 3", r"3, \frac12, 3", True),
        ("a, b", "a, b, a", True),
        ("(1,2),(3,4)", "(1,2),(3,4),(2,1)", False),
        ("(1,2),(3,4)", "(1,2),(1,2)", False),
        ("1, 2", "1, 1", False),
        ("2, 2", "2", False),  # a repeat in the gold answer is a multiplicity
        ("1, 2, 2", "1, 2", False),
        ("1, 2", "1, 2, 3", False),
        ("1, 2", "1, 2, 2, 3", False),
        ("-1, 3", "3, 1, 3", False),
        ("(2,3),(3,2)", "(2,3),(2,3)", False),
    ],
    "or_without_spaces": [
        ("(11,7),(7,11)", "(11,7)or(7,11)", True),
        ("(11,7),(7,11)", "(7,11)and(11,7)", True),
        ("(11,7)or(7,11)", "(11,7), (7,11)", True),
        ("2, 3", "2or3", True),
        ("(1,2),(2,1)", "(1,2)or (2,1)", True),
        ("(1,2),(2,1)", "(1,2) or(2,1)", True),
        ("[1,2],[3,4]", "[1,2]or[3,4]", True),
        ("-1, 4", "-1or4", True),
        (r"\frac12, 2", r"\frac{1}{2}or2", True),
        ("(0,1),(1,0)", "(0,1)and(1,0)", True),
        ("(11,7),(7,11)", "(11,7)or(7,12)", False),
        ("(11,7),(7,11)", "(11,7)or(11,7)", False),
        ("(11,7),(7,11)", "(11,7)", False),
        ("(11,7)", "(11,7)or(7,11)", False),
        ("2, 3", "2or4", False),
        ("2, 3", "23", False),
        ("-1, 4", "-1or-4", False),
        ("2", "2or3", False),
        ("[1,2],[3,4]", "[1,2]or[3,5]", False),
    ],
    "several_boxes": [
        ("1, 2", r"So $\boxed{1}$ and $\boxed{2}$.", True),
        ("1, 2", r"$\boxed{1}$, $\boxed{2}$", True),
        ("2, 1", r"$\boxed{1}$ and $\boxed{2}$", True),
        ("-3, 3", r"$x = \boxed{-3}$ or $x = \boxed{3}$", True),
        ("1, 2, 3", r"\boxed{1}, \boxed{2}, \boxed{3}", True),
        ("1, 2", r"\(\boxed{1}\) and \(\boxed{2}\)", True),
        ("2, 5", r"The solutions are $\boxed{2}$ and $\boxed{5}$.", True),
        (r"\frac12, 3", r"so $\boxed{\frac12}$ or $\boxed{3}$", True),
        ("1, 2", r"\boxed{1}\quad\boxed{2}", True),
        ("(1,2), (3,4)", r"$\boxed{(1,2)}$ and $\boxed{(3,4)}$", True),
        ("2", r"First guess \boxed{1}. Checking again, the answer is \boxed{2}.", True),
        ("7", r"I first got \boxed{5}, but that fails; it is \boxed{7}.", True),
        ("7", "\\boxed{7}\n\\boxed{7}", True),
        (r"\frac{9}{4}", r"$\boxed{2\frac14}$, or $\boxed{\frac{9}{4}}$", True),  # one value written two ways
        (r"\frac{9}{4}", r"$\boxed{2\frac14}$, or $\boxed{\frac{9}{5}}$", False),
        ("2", r"$\boxed{1}$ and $\boxed{2}$", False),  # two answers for one
        ("1", r"$\boxed{1}$ or $\boxed{2}$", False),
        ("1, 2", r"$\boxed{1}$ and $\boxed{3}$", False),
        ("1, 2", r"First \boxed{1}. Then the answer is \boxed{2}.", False),  # words between: the last box
        ("1, 2, 3", r"$\boxed{1}$, $\boxed{2}$", False),
        ("1, 2", r"$\boxed{1}$, $\boxed{2}$, $\boxed{3}$", False),
        ("5", r"\boxed{5} \text{ or } \boxed{-5}", False),
        ("(1,2)", r"$\boxed{1}$, $\boxed{2}$", False),  # a list is not a tuple
    ],
    "prose_after_box": [  # WRONG_THEN_FINAL: a box, then a Minerva-style final-answer line
        ("7", WRONG_THEN_FINAL, True),
        ("7", "\\boxed{5}\nFinal answer: \\(7\\)", True),
        (r"\frac12", r"We get \boxed{0.4}. Rechecking, the final answer is $\frac{1}{2}$.", True),
        ("12", r"\boxed{12}. The final answer is 12", True),
        ("12", "\\boxed{12}\n\nThe answer is $12$.", True),
        ("12", r"\boxed{12}. I hope my answer is correct.", True),  # no answer in the prose: the box stands
        ("12", r"\boxed{12}. Let me verify the answer: 3 \cdot 4 = 12.", True),
        ("3", r"The answer is $\boxed{3}$.", True),
        ("901", r"so $\boxed{901}$. We can check our answer: $10 \cdot 901 = 9010 \equiv 1$.", True),
        ("901", r"so $\boxed{901}$. Checking, the answer is $900 + 1$, as claimed.", True),  # not 'final answer' 
        ("1", r"so $\boxed{901}$. We can check our answer: $10 \cdot 901 = 9010 \equiv 1$.", False),
        ("7", "Final Answer: The final answer is $7$. I hope it is correct.", True),
        (r"\frac{1}{2}", r"Final Answer: \(\frac{1}{2}\)", True),
        ("5", WRONG_THEN_FINAL, False),
        ("5", "\\boxed{5}\nFinal answer: \\(7\\)", False),
        ("0.4", r"We get \boxed{0.4}. Rechecking, the final answer is $\frac{1}{2}$.", False),
        ("7", "Final Answer: The final answer is $8$. I hope it is correct.", False),
        ("13", r"\boxed{12}. The final answer is 12", False),
        (r"\frac{1}{2}", r"Final Answer: \(\frac{1}{3}\)", False),
    ],
    "no_box": [
        (r"\frac{10}{9}", r"so we get $x = \frac{10}{9}$", True),
        (r"\frac{10}{9}", r"the ratio is \(\frac{10}{9}\)", True),
        (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"The matrix is $\begin{pmatrix}1&2\\3&4\end{pmatrix}$", True),
        (r"(-\infty, 5)", "so $x < 5$", True),
        ("1024", "the value is $2^{10}$", True),
        (r"\sqrt{2}", r"the length is $\sqrt{2}$", True),
        ("17", "we get 3 apples, then 17 pears", True),
        ("18", "She earns $9 a day for 2 days, so $18 in all.", True),
        ("12", "Thus the total is 12.", True),
        ("4", "2 + 2 = 4", True),
        ("9", r"so we get x = \frac{10}{9}", False),  # a number from inside an expression is not the answer
        ("10", r"so we get x = \frac{10}{9}", False),
        ("4", r"The matrix is \begin{pmatrix}1&2\\3&4\end{pmatrix}", False),
        ("5", "so x < 5", False),
        ("5", "so $x < 5$", False),
        ("10", "the value is 2^{10}", False),
        ("2", r"the length is \sqrt{2}", False),
    ],
}
WHOLE = {"several_boxes", "prose_after_box", "no_box"}  # model answers that are whole completions
CASES = [(kind, gold, answer, same) for kind, rows in KINDS.items() for gold, answer, same in rows]


def completion(kind, answer):
    return answer if kind in WHOLE else boxed(answer)


@pytest.mark.parametrize("kind,gold,answer,same", CASES)
def test_kinds(kind, gold, answer, same):
    assert verify(completion(kind, answer), gold) is same


def test_extraction_contract():
    assert extract_answer(r"$\boxed{1}$, $\boxed{2}$ and $\boxed{3}$") == "1, 2, 3"
    assert extract_answer(r"\boxed{1}. So, after all, \boxed{2}") == "2"
    assert extract_answer(r"\boxed{\boxed{5}}") == "5"
    assert extract_answer("\\boxed{5}\nFinal Answer: The final answer is $\\frac{7}{2}$. I hope") == r"\frac{7}{2}"
    assert extract_answer(r"\boxed{5}. The answer is correct.") == "5"  # words after the marker: the box stands
    assert extract_answer(r"so $y = \frac{10}{9}$ and we are done") == r"y = \frac{10}{9}"
    assert extract_answer(r"so y = \frac{10}{9} and we are done") is None
    assert extract_answer(r"\boxed{3}" + "$" * 5000 + "x") == "3"
    flood = "".join(f"\\boxed{{{i}}}, " for i in range(1000))
    assert extract_answer(flood) == ", ".join(str(i) for i in range(936, 1000))  # at most MAX_ITEMS boxes are joined
    assert extract_answer("\\boxed{77}\n\\boxed{77}") == "77"  # a box repeated word for word counts once


# gold answers as datasets store them: AMC23 writes JSON numbers (27.0)
NUMERIC_GOLDS = [
    (27, "27", True), (27.0, "27", True), (27.0, "27.0", True), (27.0, r"\frac{54}{2}", True), (0.5, r"\frac12", True),
    (0.5, "0.5", True), (-3, "-3", True), (2.5, r"\frac{5}{2}", True), (100, "100.0", True), (0.25, r"25\%", True),
    (1e-05, "10^{-5}", True), (10 ** 30, "10^{30}", True),
    (27, "26.99", False), (27.0, "28", False), (0.5, "0.6", False), (-3.0, "3", False), (27.0, "27.5", False),
    (3, "3.0001", False), (0.5, r"\frac{1}{3}", False), (1e-05, "10^{-6}", False),
]


@pytest.mark.parametrize("gold,answer,same", NUMERIC_GOLDS)
def test_numeric_golds(gold, answer, same):
    assert verify(boxed(answer), gold) is same


@pytest.mark.parametrize("gold", [None, True, False, [27], {"answer": 27}, (27,), b"27", 1 + 2j, object()])
def test_other_gold_types_are_a_type_error(gold):
    with pytest.raises(TypeError, match="gold answer must be a str, int or float"):
        verify(boxed("27"), gold)


@pytest.mark.parametrize("gold", [math.nan, math.inf, -math.inf])
def test_non_finite_golds_are_refused(gold):
    with pytest.raises(ValueError, match="not a number that can be matched"):
        verify(boxed("27"), gold)
