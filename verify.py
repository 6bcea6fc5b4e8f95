"""
Answer extraction and equivalence checking for math RL rewards, safe on hostile model output.

    extract_answer(text) -> str | None     the completion's final answer (its docstring is the extraction contract)
    verify(completion, gold) -> bool       is the completion's answer equivalent to the gold answer (str, int, float)?
    verify_choice(completion, letter)      did a multiple-choice completion (GPQA) pick this option letter?
    gold_answer(row, dataset) -> str|None  a dataset row's gold answer, None when empty or unparseable
    is_parseable(answer) -> bool           can verify() score against this gold answer?
    grade(text, problem) -> bool           a completion's accuracy reward (verify, or verify_choice for GPQA)
    format_ok(text, pattern) -> bool       the format reward's test: re.match(pattern, text, DOTALL | MULTILINE)

The file reads in the order of the work: extraction (a completion's final answer), normalisation (string to
string), parsing (string to value), comparison (value against value), then the entry points that chain them.

How two answers are compared (verify): both are normalised (\\dfrac, \\left/\\right, \\text{}, units, degrees, $,
percent signs and words, thousands separators, trailing dots), then compared as strings; if that fails, each is parsed
into a value and the values are compared. A value is a sympy expression or a structure of them (the named types of
the parsing section): a tuple or interval (Bracketed: ordered, brackets matter), a set or a bare comma list (Set:
unordered; a repeat in the answer is dropped unless the gold answer repeats too), a union of intervals (Union,
unordered), a matrix (Matrix, element by element), a ratio (Ratio: a:b is a/b; ratios compare when proportional), an
equation (Equation: the same up to a constant factor), an inequality (a linear one in one variable is its interval;
others a Relation, the same up to a positive factor), or a text answer. A name or label on the left is dropped:
`x = 5`, `(p, q) = (3, 2)`, `|AB| = 1`, `V_1:V_2 = 11:21` compare as their right sides, and a chain `x = 2 + 3 = 5`
as its last; `1 \\pm 2` and `\\pm 2` are sets; `a \\approx b` (Approx) is a, and b too for a decimal gold answer.
Two expressions are equal when sympy builds the same object, or else when they agree numerically: constants are
evaluated with mpmath at 40 digits; expressions with variables are evaluated at 4 fixed pseudo-random points
(a probabilistic identity test, never simplify()). Relative tolerances: 1e-4 when the gold answer is written as a
decimal (the Qwen2.5-Math grader's); 1e-6 when the gold answer is exact and the prediction is a decimal (0.333333
is 1/3, 0.333 is not); otherwise 1e-20 at 40 digits, i.e. exact (an integer gold answer is matched exactly).

Safety: model text is never given to eval, exec, sympify or parse_expr. A small tokenizer and recursive-descent
parser build sympy objects directly. Inputs are bounded before sympy sees them: answer length, nesting depth,
total digits of every number built (power towers), factorial and binomial arguments, radicand size, list length.
Every verify() call has a deadline checked by the parser and the evaluator (thread-safe); in the main thread a
SIGALRM timer backs it up in case a single sympy call runs long.
"""
import cmath
import decimal
import math
import numbers
import random
import re
import signal
import threading
import time
import unicodedata
from contextlib import contextmanager
from functools import lru_cache
from types import SimpleNamespace
from typing import NamedTuple

import mpmath
import sympy
from sympy import Integer, Rational, Symbol

MAX_COMPLETION_CHARS = 200_000  # longer completions score False (far beyond any generation length we sample)
MAX_ANSWER_CHARS = 1_000  # longer extracted answers score False
MAX_DEPTH = 40  # nesting of groups, fractions, exponents, function arguments
MAX_DIGITS = 5_000  # total decimal digits of all the numbers built while parsing one answer
MAX_RADICAND_DIGITS = 100  # sympy factorises the base of n**(p/q): 10**3000+1 takes seconds
MAX_FACTORIAL = 1_000
MAX_ITEMS = 64  # elements of a list, set, tuple or matrix
MAX_SYMBOLS = 16
TIME_LIMIT_S = 0.5  # per verify() call
REL_TOL_DECIMAL = 1e-4  # gold answer written as a decimal
REL_TOL_APPROX = 1e-6  # exact gold answer, decimal prediction
REL_TOL_EXACT = 1e-20  # both exact (evaluated at 40 digits)
N_POINTS = 4  # sample points for expressions with variables


class ParseError(ValueError):
    pass


class _Timeout(BaseException):  # BaseException so that no `except Exception` inside sympy swallows it
    pass


_local = threading.local()  # per thread: the deadline of the verify() call under way, private mpmath contexts


def _check_deadline():
    """Raise _Timeout once the deadline of the verify() call under way has passed (no deadline outside one)."""
    deadline = getattr(_local, "deadline", None)
    if deadline is not None and time.perf_counter() > deadline:
        raise _Timeout()


# ----------------------------------------------------------------------------------------------------------------
# extraction: the final answer of a completion (extract_answer), and a multiple-choice letter

_BOX_COMMANDS = ("\\boxed", "\\fbox")


class Box(NamedTuple):  # a complete \boxed{...} (or \fbox) at text[start:end]
    start: int
    end: int
    content: str


def _braced(text, i):
    """The content of the {...} group starting at text[i] (brace-matched, \\{ and \\} skipped), or None."""
    depth = 0
    for j in range(i, min(len(text), i + MAX_ANSWER_CHARS + 2)):
        c = text[j]
        if c == "\\":  # skip the escaped character (\{ \} \\)
            continue
        if j > 0 and text[j - 1] == "\\" and (j < 2 or text[j - 2] != "\\"):
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def _box_at(text, start, cmd):
    """The Box whose command `cmd` starts at text[start]: `{...}` brace-matched, or `\\boxed 5`; else None."""
    j = start + len(cmd)
    if text.startswith("{", j):
        content = _braced(text, j)
        return Box(start, j + len(content) + 2, content) if content is not None else None
    m = re.match(r" +([^\s$]+)", text[j:j + MAX_ANSWER_CHARS])
    return Box(start, j + m.end(), m.group(1)) if m else None


def _box_run(text):
    """The Boxes of the last complete box and the boxes just before it that only separators divide from it, in
    order; [] when there is no complete box. Scans backwards, so a flood of boxes costs little."""
    run, end, incomplete = [], len(text), 0
    while len(run) < MAX_ITEMS:
        i, cmd = max((text.rfind(c, 0, end), c) for c in _BOX_COMMANDS)
        if i < 0:
            break
        box, end = _box_at(text, i, cmd), i
        if box is None:  # an unclosed box (a truncated generation): fall back to the boxes before it
            incomplete += 1
            if run or incomplete >= 3:
                break
            continue
        between = text[box.end:run[0].start] if run and box.end <= run[0].start else None
        if run and (between is None or len(between) > 40 or not _RE_BOX_JOIN.fullmatch(between)):
            break  # a box around the run (\boxed{\boxed{5}}), or words between: not one answer
        run.insert(0, box)
    return run


# between two boxes of one answer: spaces, math delimiters, commas, 'and', 'or', \quad, a name and '=' (`$x = \boxed{1}$
# or $x = \boxed{2}$`); any other word ends the run
_RE_BOX_JOIN = re.compile(r"(?:\s|\$|[,;]|\\[()\[\]]|\\q?quad|\\text\s*\{\s*(?:and|or|,)?\s*\}|\band\b|\bor\b"
                          r"|\b[A-Za-z](?:_\{?\w+\}?)?\s*=)*")
_RE_MARKER_AT = re.compile(r"answer(\s+is\b|\s*:)?\s*:?")  # at a lower-cased 'answer'
_RE_MATH_SPAN = re.compile(r"\$\$(.{1,1000}?)\$\$|\\\[(.{1,1000}?)\\\]|\\\((.{1,1000}?)\\\)"  # $$ $$, \[ \], \( \)
                           r"|(?<!\\)\$([^$\n]{1,1000}?)(?<!\\)\$", re.DOTALL)  # $ $ on one line
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def last_boxed(text):
    """The answer in the boxes of text: the last complete \\boxed{...} (or \\fbox), joined with the boxes just before
    it that only separators divide from it (`$\\boxed{1}$, $\\boxed{2}$` is '1, 2'); None without a complete box."""
    return _joined(_box_run(text))


def _joined(run):
    """The contents of a run of boxes as one answer; a box repeated word for word counts once."""
    return ", ".join(dict.fromkeys(box.content.strip() for box in run)) if run else None


def _statement(rest):
    """The answer stated at the start of `rest` (what follows 'answer is'): its first math span when it opens with
    one, else the text up to the end of the line or sentence."""
    rest = rest.lstrip()
    span = _RE_MATH_SPAN.match(rest)
    if span:
        return next(g for g in span.groups() if g is not None).strip()
    rest = re.split(r"\.\s|\n", rest)[0].strip().strip("$ .:")
    return rest if rest and len(rest) <= MAX_ANSWER_CHARS else None


def _last_marker(text, start, final_only):
    """Where the statement after the last answer marker in text[start:] begins ('####', 'final answer', 'answer
    is', 'answer:', any case; only 'final answer' when final_only), or -1."""
    best = -1 if final_only or text.rfind("####", start) < 0 else text.rfind("####", start) + 4
    low, end = text.lower(), len(text)
    while True:
        i = low.rfind("answer", start, end)
        if i < 0 or i < best:
            return best
        m = _RE_MARKER_AT.match(low, i)
        final = low[max(0, i - 20):i].rstrip().endswith("final")
        if final or m.group(1) and not final_only:
            return max(best, m.end())
        end = i


def extract_answer(text):
    """
    The final answer in a completion (the extraction contract):
    1. the boxes: the last complete \\boxed{...} (or \\fbox), together with the boxes just before it when only
       separators (commas, 'and', 'or', spaces, math delimiters) stand between them: `$\\boxed{1}$ and
       $\\boxed{2}$` reads '1, 2', while `\\boxed{1}, then \\boxed{2}` reads '2';
    2. unless a final-answer statement follows the last box ('Final Answer: The final answer is $7$', 'final
       answer: \\(7\\)'): a math span or a number after it overrides the box ('we check the answer: ...' does not);
    3. no box: the statement after the last marker ('####', 'final answer', 'answer is', 'answer:'): its first
       math span, else the rest of its line or sentence;
    4. no marker: the last number in the text, unless it sits inside an expression (`\\frac{10}{9}`, a matrix,
       `x < 5`): then the math span ($...$, \\(...\\), \\[...\\]) that holds it, or None.
    None when there is nothing, or the text is over MAX_COMPLETION_CHARS.
    """
    if not isinstance(text, str) or len(text) > MAX_COMPLETION_CHARS:
        return None
    run = _box_run(text)
    marker = _last_marker(text, run[-1].end if run else 0, final_only=bool(run))
    if marker >= 0:
        rest = text[marker:]
        stated = _statement(rest)
        if stated and (not run or _RE_MATH_SPAN.match(rest.lstrip()) or _NUMBER_RE.fullmatch(stated)):
            return stated
    if run:
        return _joined(run).strip() or None
    last = None
    for lo in (len(text) - 4096, 0):  # the last number: in the tail first, so that a long text costs little
        for last in _NUMBER_RE.finditer(text, max(lo, 0)):
            pass
        if last is not None and (lo <= 0 or last.start() > lo):
            break
    if last is None:
        return None
    lo = max(0, last.start() - 2 * MAX_ANSWER_CHARS)  # from a line start: $ pairs are read in order
    lo = text.find("\n", lo, last.start()) + 1 or lo
    spans = [s for s in _RE_MATH_SPAN.finditer(text, lo, last.end() + MAX_ANSWER_CHARS)
             if s.start() < last.start() and last.end() <= s.end()]
    if spans:
        return next(g for g in spans[-1].groups() if g is not None).strip() or None
    before, after = text[lo:last.start()].rstrip()[-1:], text[last.end():last.end() + 50].lstrip()[:1]
    if before in ("{", "^", "_", "/", "<", ">", "&", "\\") or after in ("}", "^", "_", "/", "&", "\\", "<", ">"):
        return None  # a piece of an expression outside any math span
    return last.group().rstrip(",")


_RE_LETTER = re.compile(r"\(?([A-D])\)?(?:$|[.):]\s*)")  # C, (C), C), C. or C) and the option's text
_RE_WRAP = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf)\s*\{([^{}]*)\}")


def extract_choice(text):
    """The option letter (A-D) a multiple-choice completion chose: its final answer (extract_answer: the last
    \\boxed{C}, else what follows 'answer is' / 'answer:'), else its last <answer>...</answer> block; None when
    neither is a letter."""
    if not isinstance(text, str) or len(text) > MAX_COMPLETION_CHARS:
        return None
    tag = text.rsplit("<answer>", 1)[1].split("</answer>")[0] if "<answer>" in text else None
    for found in (extract_answer(text), tag):
        found = _RE_WRAP.sub(r"\1", found or "").strip().strip("$*` ")
        m = _RE_LETTER.match(found)
        if m:
            return m.group(1)
    return None


def verify_choice(completion, letter):
    """True when a multiple-choice completion chose the gold option letter. Never raises."""
    try:
        return extract_choice(completion) == letter
    except Exception:
        return False


# ----------------------------------------------------------------------------------------------------------------
# normalisation: an answer string to a canonical string (deterministic, cheap, no parsing)

_UNICODE = str.maketrans({
    "\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u22c5": "\\cdot ", "\u00b7": "\\cdot ", "\u00f7": "/",
    "\u03c0": "\\pi ", "\u221a": "\\sqrt", "\u221e": "\\infty ", "\u00b0": "^\\circ", "\u2264": "\\le ",
    "\u2265": "\\ge ", "\u2260": "\\ne ", "\u00b1": "\\pm ", "\u2213": "\\mp ", "\u222a": "\\cup ",
    "\u00b2": "^2", "\u00b3": "^3", "\u2044": "/", "\u00a0": " ", "\u200b": "", "\u200c": "", "\u200d": "",
    "\u200e": "", "\u200f": "", "\u2060": "", "\ufeff": "", "\u2009": " ", "\u202f": " ",
    "\u03b1": "\\alpha ", "\u03b2": "\\beta ", "\u03b3": "\\gamma ", "\u03b8": "\\theta ", "\u03bb": "\\lambda ",
    "\u03bc": "\\mu ", "\u03c3": "\\sigma ", "\u03c6": "\\phi ", "\u03c9": "\\omega ",
})
_UNIT_WORDS = ("square units|sq units|units?|square feet|sq ft|square meters|square inches|cm|mm|km|meters?|metres?|"
               "inches|inch|feet|foot|ft|yards?|miles?|mph|hours?|hrs?|minutes?|mins?|seconds?|secs?|degrees?|"
               "cents?|dollars?|days?|weeks?|months?|years?|people|students|ways|pounds?|lbs?|kg|grams?|liters?|"
               "gallons?|ounces?|points?|marbles|apples|cookies|pages|boxes|books")
_RE_UNIT_TAIL = re.compile(r"(?<=[\d}\s])\s*(?:" + _UNIT_WORDS + r")(?:\s*\^\s*\{?[23]\}?)?\s*$")
_RE_TEXT = re.compile(r"\\(text|textrm|textnormal|mathrm|mbox|textbf|mathbf|textit|mathit|boldsymbol|mathsf"
                      r"|operatorname)\s*\{([^{}]*)\}(\s*\^\s*\{?[23]\}?)?")
_RE_SUBS = [(re.compile(p), r) for p, r in [
    (r"\\[$]", ""), (r"\$", ""),
    (r"\\(?:left|right)\s*\.", ""),
    (r"\\[lr]?vert(?![A-Za-z])|\\mid(?![A-Za-z])", "|"),
    (r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![A-Za-z])", ""),
    (r"\\displaystyle|\\limits", ""),
    (r"\\[dtc]frac(?![A-Za-z])", r"\\frac"), (r"\\[dt]binom(?![A-Za-z])", r"\\binom"),
    (r"(\d),\\!\s*(?=\d)", r"\1"),  # 10,\!080
    (r"(\d)\s*(?:\{\s*,\s*\}|\\,)\s*(?=\d\d\d(?!\d))", r"\1"),  # 10{,}080 14 {, }916 10\,080
    (r"\\(?:text|mbox)\s*\{\s*,?\s*(?:and|or)\s*\}", ","), (r"\s+(?:and|or)\s+", ","), (r";", ","),
    (r"(?<=[\d)\]}])\s*(?:and|or)\s*(?=[-\d(\[{\\])", ","),  # (11,7)or(7,11)
    (r"(?<!\\)\\[()\[\]]", ""), (r"\\colon(?![A-Za-z])", ":"),  # \( \) \[ \] math delimiters
    (r"\\phantom\s*(?:\{[^{}]*\}|.)", ""),
    (r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree", ""),
    (r"\\q?quad(?![A-Za-z])|(?<!\\)\\[,;:! ]|~", " "),
    (r"\\simeq(?![A-Za-z])", r"\\approx "), (r"^\s*(?:=|\\approx(?![A-Za-z]))", ""), (r",(?:\s*,)+", ","),
    (r"\b(?:np|math|sympy)\.", ""),
]]
_RE_PERCENT = re.compile(r"\\?%|(?<=[\d{}\s])\s*\b(?:percent|per\s+cent|pct)\b\.?")  # 28%, 28 percent
_RE_REPEATING = re.compile(r"(\d*)\.(\d*)\\overline\s*\{(\d+)\}")
_RE_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _text_block(m):
    """\\text{...}-like blocks: unwrap names and whole answers, drop units that follow a quantity."""
    cmd, content, power = m.group(1), m.group(2).strip(), m.group(3) or ""
    before = m.string[:m.start()].rstrip()
    if cmd in ("textbf", "mathbf", "textit", "mathit", "boldsymbol", "mathsf") or len(content) <= 1 \
            or not before or before.endswith(("_", "_{", "{", "(", ",", "=")) \
            or cmd == "operatorname" or not re.fullmatch(r"[A-Za-z\s.\-/]+", content):
        return (" \\" + content + " " if cmd == "operatorname" and content in _FUNCS else " " + content + " ") + power
    return " "  # a unit after a quantity: 5 \text{ cm}^2 -> 5


def _repeating(m):
    whole, fixed, rep = m.group(1) or "0", m.group(2), m.group(3)
    num = int(whole + fixed + rep) - int(whole + fixed)
    den = (10 ** len(rep) - 1) * 10 ** len(fixed)
    return f"\\frac{{{num}}}{{{den}}}"


def normalize(answer):
    """Normalised answer string and whether it had a percent sign. Deterministic, cheap, no parsing."""
    s = " ".join(answer.translate(_UNICODE).split())
    if not s.isascii():
        s = unicodedata.normalize("NFKC", s)
    for pattern, repl in _RE_SUBS:
        s = pattern.sub(repl, s)
    s, n_percent = _RE_PERCENT.subn("", s)
    for _ in range(3):  # nested blocks unwrap from the inside out
        s2 = _RE_TEXT.sub(_text_block, s)
        if s2 == s:
            break
        s = s2
    s = _RE_UNIT_TAIL.sub("", s)
    s = _RE_REPEATING.sub(_repeating, s)
    s = " ".join(s.split()).rstrip(" .,;:").lstrip(" ,;:")  # not a leading dot: .0000672
    if _RE_THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s, n_percent > 0


# ----------------------------------------------------------------------------------------------------------------
# parsing: a normalised string to a value, never through eval or sympify: a tokenizer and a recursive-descent
# parser build a sympy expression directly, or one of these structures of values

class Bracketed(NamedTuple):  # a tuple or an interval: ordered, and the brackets matter ((1, 2] is not (1, 2))
    open: str
    close: str
    items: list


class Set(NamedTuple):  # a set, or a bare comma list: unordered
    items: list


class Union(NamedTuple):  # intervals or sets joined by \cup: unordered
    parts: list


class Matrix(NamedTuple):
    rows: list  # lists of expressions, all of one length


class Equation(NamedTuple):  # lhs = rhs; `named` when lhs is a name or a label (x, f(2), (p, q), |AB|)
    lhs: object
    rhs: object
    named: bool


class Relation(NamedTuple):  # `diff op 0`, diff = lhs - rhs, op in <, <=, != (not an interval of one variable)
    op: str
    diff: object


class Approx(NamedTuple):  # exact \approx rounded: \frac13 \approx 0.333
    exact: object
    rounded: object


class Ratio(NamedTuple):  # a : b (: c ...)
    parts: list


class Parsed(NamedTuple):
    value: object  # a sympy expression, or a structure of them (Bracketed, Set, Union, Matrix, Equation, ...)
    has_decimal: bool  # a number in it was written as a decimal (3.21, 4.5e33): compared with a tolerance


class Token(NamedTuple):
    kind: str  # num, letter, cmd (a backslash command or a function name), op; "end" past the last token
    text: str
    spaced: bool  # a space before it: f (x) is not the function value f(x)


_END = Token("end", "", False)

_TOKEN_RE = re.compile(r"\s*(?:(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"  # number, 4.5e33
                       r"|(\\(?:begin|end)\s*\{[A-Za-z*]+\}|\\[A-Za-z]+|\\.)"  # \begin{pmatrix}, \frac, \{
                       r"|([A-Za-z]+)|(\*\*|<=|>=|!=|[-+*/^_()\[\]{},=<>!|&':]))")
_FUNCS = {"sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "arccot", "sinh", "cosh", "tanh",
          "log", "ln", "lg", "exp", "sqrt"}
_WORD_COMMANDS = _FUNCS | {"pi", "infty"}
_FUNCS_LONGEST_FIRST = sorted(_FUNCS, key=len, reverse=True)
_WORD_ALIASES = {"inf": "infty", "infinity": "infty", "asin": "arcsin", "acos": "arccos", "atan": "arctan"}


def tokenize(s):
    """The Tokens of a normalised answer string; ParseError on a character or a word it cannot read."""
    tokens, pos = [], 0
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if m is None:  # (a normalised string has no trailing space)
            raise ParseError(f"unexpected character {s[pos]!r} at {pos}")
        num, cmd, word, op = m.groups()
        sp = s[pos].isspace()
        pos = m.end()
        if num is not None:
            tokens.append(Token("num", num, sp))
        elif cmd is not None:
            tokens.append(Token("cmd", re.sub(r"\s+", "", cmd), sp))
        elif op is not None:
            tokens.append(Token("op", "^" if op == "**" else op, sp))
        else:
            w = _WORD_ALIASES.get(word, word)
            head = next((f for f in _FUNCS_LONGEST_FIRST if w.startswith(f) and len(w) == len(f) + 1), None)
            if head and w not in _WORD_COMMANDS:  # sinx, lnx: a function name glued to a one-letter argument
                tokens.append(Token("cmd", "\\" + head, sp))
                w, sp = w[len(head):], False
            if w in _WORD_COMMANDS:
                tokens.append(Token("cmd", "\\" + w, sp))
            elif len(w) <= 3:  # 'ab' is a*b
                tokens.extend(Token("letter", c, sp and k == 0) for k, c in enumerate(w))
            elif w.isupper():  # acronyms (SRMC) are one symbol
                tokens.append(Token("letter", w, sp))
            else:
                raise ParseError(f"word {word!r}")
    return tokens


_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
          "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
          "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega", "ell", "hbar", "mho"}
_FUNC_OF = {"\\sin": sympy.sin, "\\cos": sympy.cos, "\\tan": sympy.tan, "\\cot": sympy.cot, "\\sec": sympy.sec,
            "\\csc": sympy.csc, "\\arcsin": sympy.asin, "\\arccos": sympy.acos, "\\arctan": sympy.atan,
            "\\arccot": sympy.acot, "\\sinh": sympy.sinh, "\\cosh": sympy.cosh, "\\tanh": sympy.tanh,
            "\\ln": sympy.log, "\\log": sympy.log, "\\exp": sympy.exp, "\\lg": lambda x: sympy.log(x, 10)}
_INVERSE_OF = {"\\sin": sympy.asin, "\\cos": sympy.acos, "\\tan": sympy.atan}
_ACCENTS = {"\\dot", "\\ddot", "\\hat", "\\bar", "\\vec", "\\tilde", "\\overline", "\\widehat", "\\overrightarrow"}
_RELOPS = {"=": "=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "!=": "!=", "\\le": "<=", "\\leq": "<=",
           "\\leqslant": "<=", "\\ge": ">=", "\\geq": ">=", "\\geqslant": ">=", "\\lt": "<", "\\gt": ">",
           "\\ne": "!=", "\\neq": "!=", "\\in": "in", "\\approx": "~"}
_MATRIX_ENVS = {"pmatrix", "bmatrix", "matrix", "Bmatrix", "smallmatrix", "array"}  # not vmatrix: a determinant
_PRIMARY_CMDS = {"\\frac", "\\sqrt", "\\binom", "\\pi", "\\infty", "\\lfloor", "\\lceil"} | \
    set(_FUNC_OF) | {"\\" + g for g in _GREEK} | _ACCENTS


def _is_expr(v):
    return isinstance(v, sympy.Basic)


def _expr(v):
    if not _is_expr(v):
        raise ParseError(f"a {type(v).__name__} where a number was expected")
    return v


class _Parser:
    """Recursive descent over the token list; every sympy object is built here from parsed pieces."""

    def __init__(self, tokens):
        self.toks, self.pos, self.depth, self.digits = tokens, 0, 0, 0
        self.has_decimal = False
        self.pm_choice, self.pm_count, self.pm_allowed, self.abs_open = (), 0, False, 0

    # -- token helpers
    def peek(self, k=0):
        i = self.pos + k
        return self.toks[i] if i < len(self.toks) else _END

    def next(self):
        _check_deadline()
        tok = self.peek()
        if tok.kind == "end":
            raise ParseError("unexpected end")
        self.pos += 1
        return tok

    def at(self, text):
        tok = self.peek()
        return tok.kind in ("op", "cmd") and tok.text == text

    def accept(self, text):
        if self.at(text):
            self.pos += 1
            return True
        return False

    def expect(self, text):
        if not self.accept(text):
            raise ParseError(f"expected {text!r}, got {self.peek().text!r}")

    @contextmanager
    def nested(self):
        """One level deeper (groups, fractions, exponents, arguments), at most MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("nesting too deep")
        yield
        self.depth -= 1

    def spend(self, digits):
        self.digits += digits
        if self.digits > MAX_DIGITS:
            raise ParseError("numbers too large")

    # -- grammar, loosest first
    def parse_answer(self):
        items = self.parse_items()
        if self.peek().kind != "end":
            raise ParseError(f"unexpected {self.peek().text!r}")
        return items[0] if len(items) == 1 else Set(items)

    def parse_items(self, expand_pm=True):
        items = []
        while True:
            items.extend(self.parse_element() if expand_pm else [self.parse_relation()])
            if len(items) > MAX_ITEMS:
                raise ParseError("too many items")
            if not self.accept(","):
                return items

    def parse_element(self):
        """One list element; `a \\pm b` becomes the two elements a + b and a - b (at most two signs)."""
        start, saved = self.pos, (self.pm_choice, self.pm_count, self.pm_allowed)
        self.pm_choice, self.pm_count, self.pm_allowed = (), 0, True
        out = [self.parse_relation()]
        n = self.pm_count  # at most 2: parse_additive refuses a third
        if n > 0:
            out = []
            for choice in ((1,), (-1,)) if n == 1 else ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                self.pos, self.pm_choice, self.pm_count = start, choice, 0
                out.append(self.parse_relation())
        self.pm_choice, self.pm_count, self.pm_allowed = saved
        return out

    def parse_relation(self):
        start = self.pos
        parts, ops = [self.parse_ratio()], []
        lhs_end = self.pos
        while self.peek().kind in ("op", "cmd") and self.peek().text in _RELOPS:
            ops.append(_RELOPS[self.next().text])
            parts.append(self.parse_ratio())
        if not ops:
            return parts[0]
        named = self._is_label(start, lhs_end)
        if ops == ["in"] and named:  # x \in [a, b]
            return parts[1]
        if "~" in ops and set(ops) <= {"=", "~"}:  # \frac13 \approx 0.333: the exact value, then the rounded one
            k = ops.index("~")
            if named and k == 0:  # x \approx 0.333 is x = 0.333
                return Equation(parts[0], parts[-1], True)
            exact = _equation(parts[:k + 1], named) if k else parts[0]
            if _is_expr(exact) and exact.free_symbols:
                raise ParseError("\\approx after an expression in a variable")  # 2x \approx 0.3 is not 0.3
            return Approx(exact, parts[-1])
        if set(ops) == {"="}:
            return _equation(parts, named)
        if "in" in ops or "~" in ops or any(not _is_expr(p) for p in parts):
            raise ParseError("relation between structures")
        if ops == ["!="]:
            return Relation("!=", parts[0] - parts[1])
        if len(ops) == 1:
            return _inequality(parts[0], ops[0], parts[1])
        if len(ops) == 2 and "!=" not in ops and (ops[0][0] == ops[1][0]):  # 1 < x <= 3, 4 > 2x - 2 > -4
            lo, hi = (parts[0], parts[2]) if ops[0][0] == "<" else (parts[2], parts[0])
            lo_op, hi_op = (ops[0], ops[1]) if ops[0][0] == "<" else (ops[1], ops[0])
            lin = _linear(parts[1])
            if lin and not (lo.free_symbols | hi.free_symbols) & {lin[0]}:
                x, a, b = lin
                lo, hi = (lo - b) / a, (hi - b) / a
                if a < 0:
                    lo, hi, lo_op, hi_op = hi, lo, hi_op, lo_op
                return Bracketed("(" if lo_op in "<>" else "[", ")" if hi_op in "<>" else "]", [lo, hi])
        raise ParseError("unsupported relation chain")

    def _is_label(self, start, end):
        """Is toks[start:end] a name or a label, the left side of `x = 5`: x, AB, a_1, \\theta, f(x), m_{\\max},
        (p, q), |AB|, V_1:V_2, \\frac{NO}{BO}? Names joined by brackets, commas, bars, ratios and fraction bars;
        a number only in a subscript or as a function's argument (f(2)); no arithmetic, no powers."""
        toks, kept, i = self.toks[start:end], [], 0
        while i < len(toks):  # drop subscripts
            if toks[i].text == "_" and toks[i].kind == "op":
                i, depth = i + 1, 0
                while i < len(toks):
                    depth += {"{": 1, "}": -1}.get(toks[i].text, 0) if toks[i].kind == "op" else 0
                    i += 1
                    if depth <= 0:
                        break
                continue
            kept.append(toks[i])
            i += 1
        if not any(t.kind == "letter" or t.kind == "cmd" and t.text[1:] in _GREEK for t in kept):
            return False
        for k, (kind, text, _) in enumerate(kept):
            if kind == "letter" or kind == "cmd" and (text[1:] in _GREEK or text in _ACCENTS or text == "\\frac"):
                continue
            if kind == "op" and text in ("(", ")", ",", "|", ":", "{", "}", "/", "'"):
                continue
            if kind == "num" and text.isdigit() and k >= 2 and kept[k - 1].text == "(" and kept[k - 2].kind == "letter":
                continue
            return False
        return True

    def parse_ratio(self):
        """a : b (: c): a ratio, kept as its parts."""
        first = self.parse_union()
        if not self.at(":"):
            return first
        parts = [_expr(first)]
        while self.accept(":"):
            parts.append(_expr(self.parse_union()))
        if len(parts) > 8:
            raise ParseError("ratio of too many parts")
        return Ratio(parts)

    def parse_union(self):
        first = self.parse_additive()
        if not self.at("\\cup"):
            return first
        parts = [first]
        while self.accept("\\cup"):
            parts.append(self.parse_additive())
        if not all(isinstance(p, (Bracketed, Set)) for p in parts):
            raise ParseError("\\cup of non-sets")
        return Union(parts)

    def parse_additive(self):
        tok = self.peek()  # a leading \pm: `\pm 2` is the two elements 2 and -2
        leading_pm = self.pm_allowed and tok.kind == "cmd" and tok.text in ("\\pm", "\\mp")
        value = Integer(0) if leading_pm else self.parse_term()
        while True:
            tok = self.peek()
            if tok.text in ("+", "-") and tok.kind == "op":
                self.next()
                term = _expr(self.parse_term())
                value = _expr(value) + (term if tok.text == "+" else -term)
            elif tok.text in ("\\pm", "\\mp") and tok.kind == "cmd":
                if not self.pm_allowed or self.pm_count >= 2:
                    raise ParseError("\\pm here")
                self.next()
                sign = self.pm_choice[self.pm_count] if self.pm_choice else 1
                self.pm_count += 1
                term = _expr(self.parse_term())
                value = _expr(value) + (sign if tok.text == "\\pm" else -sign) * term
            else:
                return value

    def parse_term(self):
        k = 0
        while self.peek(k).text in ("-", "+") and self.peek(k).kind == "op":
            k += 1
        integer = self.peek(k).kind == "num" and self.peek(k).text.isdigit()
        value = self.parse_unary()
        if integer and self.at("\\frac"):  # a mixed number: 1\frac{4}{5} is 9/5, -8\frac47 is -60/7
            start = self.pos
            frac = self.parse_power()
            plain = all(t.text in ("\\frac", "{", "}") or t.text.isdigit() for t in self.toks[start:self.pos])
            if plain and frac.is_Rational and 0 < frac < 1:
                return value + frac if value >= 0 else value - frac
            value = value * _expr(frac)
        while True:
            tok = self.peek()
            if tok.text in ("*", "\\cdot", "\\times") and tok.kind in ("op", "cmd"):
                self.next()
                value = _expr(value) * _expr(self.parse_unary())
            elif tok.text in ("/", "\\div") and tok.kind in ("op", "cmd"):
                self.next()
                value = _divide(_expr(value), _expr(self.parse_unary()))
            elif self._starts_primary(tok):  # implicit multiplication: 2x, 2\sqrt{3}, (a+5)(b+2)
                if tok.kind == "num" and self.toks[self.pos - 1].kind == "num" and self.peek(1).text != "^":
                    raise ParseError("two numbers in a row")  # '1 000', '2 3' (but 70 2^{1/2} is a product)
                value = _expr(value) * _expr(self.parse_power())
            else:
                return value

    def _starts_primary(self, tok):
        kind, text = tok.kind, tok.text
        if kind in ("num", "letter"):
            return True
        if kind == "cmd":
            return text in _PRIMARY_CMDS
        return kind == "op" and (text in ("(", "[", "{") or (text == "|" and self.abs_open == 0))

    def parse_unary(self):
        sign = 1
        while self.peek().kind == "op" and self.peek().text in ("-", "+"):
            if self.next().text == "-":
                sign = -sign
        value = self.parse_power()
        return -_expr(value) if sign < 0 else value

    def parse_power(self):
        base = self.parse_postfix()
        if not self.at("^"):
            return base
        self.next()
        if self.at("\\prime") or (self.at("{") and self.peek(1).text == "\\prime" and self.peek(2).text == "}"):
            self.pos += 1 if self.at("\\prime") else 3
            return _primed(base)
        return _power(self, _expr(base), _expr(self.parse_exponent()))

    def parse_exponent(self):
        with self.nested():
            sign = 1
            while self.peek().kind == "op" and self.peek().text in ("-", "+"):
                if self.next().text == "-":
                    sign = -sign
            value = _expr(self.parse_power())  # right associative: 2^3^2 = 2^9
        return -value if sign < 0 else value

    def parse_postfix(self):
        value = self.parse_primary()
        while True:
            if self.at("!"):
                self.next()
                value = _factorial(self, _expr(value))
            elif self.at("'"):
                self.next()
                value = _primed(value)
            else:
                return value

    def parse_group(self, is_set=False):
        """Items of a bracketed group; in a set, `a \\pm b` gives two elements."""
        with self.nested():
            saved = self.pm_allowed, self.abs_open
            self.pm_allowed, self.abs_open = False, 0
            items = self.parse_items(expand_pm=is_set)
            self.pm_allowed, self.abs_open = saved
        return items

    def parse_arg(self):
        """Argument of \\frac, \\sqrt, \\binom: a {group}, or a single character or command (\\frac34)."""
        tok = self.peek()
        if self.accept("{"):
            with self.nested():
                value = self.parse_additive()
                self.expect("}")
            return _expr(value)
        if tok.kind == "num":
            self.next()
            if len(tok.text) > 1:  # split '34' into '3' and '4'
                self.toks.insert(self.pos, Token("num", tok.text[1:], False))
            return self.number(tok.text[0])
        if tok.kind == "letter" or tok.kind == "cmd" or tok.text == "(":
            return _expr(self.parse_primary())
        raise ParseError(f"bad argument {tok.text!r}")

    def number(self, text):
        if len(text) > 400:
            raise ParseError("number literal too long")
        mant, _, exp = text.lower().partition("e")
        whole, _, frac = mant.partition(".")
        self.spend(len(whole) + len(frac))
        if frac or exp:
            self.has_decimal = True
        value = Rational(int(whole or "0") * 10 ** len(frac) + int(frac or "0"), 10 ** len(frac))
        if exp:
            e = int(exp)
            self.spend(abs(e))
            value = value * Rational(10) ** e
        return value

    def subscript(self):
        """Raw text of a subscript: a_{1} and a_1 both give '1'."""
        if self.accept("{"):
            parts, depth = [], 1
            while True:
                tok = self.next()
                depth += {"{": 1, "}": -1}.get(tok.text, 0) if tok.kind == "op" else 0
                if depth == 0:
                    return "".join(parts)
                parts.append(tok.text)
                if len(parts) > 50:
                    raise ParseError("subscript too long")
        tok = self.next()
        return tok.text

    def symbol(self, name):
        if self.at("_"):
            self.next()
            name = f"{name}_{self.subscript()}"
        elif name == "e":
            return sympy.E
        elif name == "i":
            return sympy.I
        # f(x), I(0), \theta(t): a function value is a name of its own (not f times x)
        t0, t1, t2 = self.peek(), self.peek(1), self.peek(2)
        if t0.text == "(" and not t0.spaced and t2.text == ")" and t1.kind in ("num", "letter"):
            self.pos += 3
            name = f"{name}({t1.text})"
        return Symbol(name)

    def parse_primary(self):
        tok = self.next()
        kind, text = tok.kind, tok.text
        if kind == "num":
            value = self.number(text)
            if self.at("_"):  # 204_5: a numeral in base 5, compared as written
                self.next()
                return Symbol(f"{text}_{self.subscript()}")
            return value
        if kind == "letter":
            return self.symbol(text)
        if kind == "op":
            if text in ("(", "["):
                items = self.parse_group()
                close = self.next().text
                if close not in (")", "]"):
                    raise ParseError(f"unclosed {text}")
                if len(items) == 1 and _is_expr(items[0]):
                    if (text, close) not in (("(", ")"), ("[", "]")):
                        raise ParseError("one value in mismatched brackets")  # (5] is not an interval
                    return items[0]
                if len(items) == 1 and ((text, close) == ("(", ")") or isinstance(items[0], Matrix)):
                    return items[0]  # (a tuple) is the tuple; \left[\begin{array}..\end{array}\right] the matrix
                return Bracketed(text, close, items)
            if text == "{":
                items = self.parse_group(is_set=True)
                self.expect("}")
                return items[0] if len(items) == 1 else Set(items)
            if text == "|":
                with self.nested():
                    self.abs_open += 1
                    value = _expr(self.parse_additive())
                    self.expect("|")
                    self.abs_open -= 1
                return sympy.Abs(value)
            raise ParseError(f"unexpected {text!r}")
        # commands
        if text == "\\frac":
            with self.nested():
                num, den = self.parse_arg(), self.parse_arg()
            return _divide(num, den)
        if text == "\\sqrt":
            with self.nested():
                index = Integer(2)
                if self.accept("["):
                    index = _expr(self.parse_additive())
                    self.expect("]")
                value = self.parse_arg()
            return _power(self, value, 1 / index)
        if text == "\\binom":
            with self.nested():
                n, k = self.parse_arg(), self.parse_arg()
            return _binomial(self, n, k)
        if text == "\\pi":
            return sympy.pi
        if text == "\\infty":
            return sympy.oo
        if text in ("\\emptyset", "\\varnothing"):
            return Set([])
        if text[1:] in _GREEK:
            return self.symbol(text[1:])
        if text in _ACCENTS:  # \dot{x}, \overline{CD}: names of their own
            return self.symbol(f"{text[1:]} {self.subscript()}")
        if text in ("\\lfloor", "\\lceil"):
            with self.nested():
                value = _expr(self.parse_additive())
                self.expect("\\rfloor" if text == "\\lfloor" else "\\rceil")
            return (sympy.floor if text == "\\lfloor" else sympy.ceiling)(value, evaluate=False)
        if text in _FUNC_OF:
            return self.function(text)
        if text == "\\{":
            items = self.parse_group(is_set=True)
            self.expect("\\}")
            return Set(items)
        if text.startswith("\\begin{"):
            return self.matrix(text[len("\\begin{"):-1])
        if text in ("\\text", "\\mathrm", "\\mbox", "\\textbf", "\\mathbf", "\\operatorname"):
            return _expr(self.parse_arg())
        raise ParseError(f"unknown command {text}")

    def function(self, name):
        """\\sin x, \\sin(x), \\sin^2 x, \\sin^{-1} x, \\log_2 8, \\log _{10} 250, \\exp{a t}."""
        with self.nested():
            func, power, base = _FUNC_OF[name], None, None
            if name == "\\log" and self.accept("_"):
                base = self.parse_arg()
            if self.accept("^"):
                power = _expr(self.parse_exponent())
                if power == -1 and name in _INVERSE_OF:
                    func, power = _INVERSE_OF[name], None
            if self.at("(") or self.at("{"):
                arg = _expr(self.parse_primary())
            else:  # \sin 2x: a run of factors up to the next operator or function
                arg = _expr(self.parse_unary())
                while self._starts_primary(self.peek()) and self.peek().text not in _FUNC_OF:
                    arg = arg * _expr(self.parse_power())
            value = func(arg) if base is None else sympy.log(arg) / sympy.log(base)
        return _power(self, value, power) if power is not None else value

    def matrix(self, env):
        with self.nested():
            if env not in _MATRIX_ENVS:
                raise ParseError(f"environment {env}")
            if env == "array" and self.at("{"):  # column spec {cc}
                while not self.accept("}"):
                    self.next()
            rows, row = [], []
            while True:
                row.append(_expr(self.parse_additive()))
                if self.accept("&"):
                    continue
                rows.append(row)
                row = []
                if self.accept("\\\\") and not self.peek().text.startswith("\\end{"):
                    continue
                break
            self.expect(f"\\end{{{env}}}")
        if len({len(r) for r in rows}) != 1 or sum(map(len, rows)) > MAX_ITEMS:
            raise ParseError("ragged or large matrix")
        return Matrix(rows)


def _inequality(lhs, op, rhs):
    """x > 5, 5 < x and -2x < -10 are the interval (5, oo); other inequalities are kept as lhs - rhs {<, <=} 0."""
    if op in (">", ">="):
        lhs, rhs, op = rhs, lhs, op.replace(">", "<")
    closed = op == "<="
    if isinstance(rhs, Symbol) and rhs not in lhs.free_symbols:  # lhs < x
        return Bracketed("[" if closed else "(", ")", [lhs, sympy.oo])
    if isinstance(lhs, Symbol) and lhs not in rhs.free_symbols:  # x < rhs
        return Bracketed("(", "]" if closed else ")", [-sympy.oo, rhs])
    lin = _linear(lhs - rhs)
    if lin:  # a x + b < 0: x < -b/a when a > 0, x > -b/a when a < 0
        x, a, b = lin
        if a > 0:
            return Bracketed("(", "]" if closed else ")", [-sympy.oo, -b / a])
        return Bracketed("[" if closed else "(", ")", [-b / a, sympy.oo])
    return Relation(op, lhs - rhs)


def _linear(d):
    """(x, a, b) when d is a x + b in one symbol x, with real constants a != 0 and b; else None."""
    if len(d.free_symbols) != 1:
        return None
    x = next(iter(d.free_symbols))
    b, ax = d.as_independent(x, as_Add=True)
    a, rest = ax.as_independent(x, as_Add=False)
    if rest != x or not a.is_comparable or not b.is_comparable or a == 0:
        return None
    return x, a, b


def _equation(parts, named):
    """A chain p0 = p1 = ... : `x = 2 + 3 = 5` is x = 5 (the last right-hand side), `2 + 3 = 5` (a computation,
    no variable in it) is 5, `2x + 4y = 3` and `0 = x^2 - 4` stay equations."""
    if named:
        return Equation(parts[0], parts[-1], True)
    if len(parts) > 2 or not (_expr(parts[0]).free_symbols or _expr(parts[1]).free_symbols):
        return parts[-1]
    return Equation(parts[0], _expr(parts[1]), False)


def _primed(value):
    if not isinstance(value, Symbol):
        raise ParseError("prime of a non-symbol")
    return Symbol(value.name + "'")


def _divide(a, b):
    if b == 0:
        raise ParseError("division by zero")
    return a / b


def _digits_of(value):
    """Decimal digits needed to write a constant: of numerator and denominator for a rational, else of its size."""
    if value.is_Rational:
        return math.log10(max(abs(value.p), value.q, 1))
    try:
        ctx = _ctx(15)
        v = abs(_num(value, {}, ctx))
    except _NUM_ERRORS:
        raise ParseError("constant cannot be evaluated")
    return 1 + (0 if v == 0 else abs(float(ctx.log10(v))))


def _power(p, base, exp):
    if exp.is_Number and not base.free_symbols:  # a constant to a numeric power: bound the size of the result
        if not exp.is_Rational:
            raise ParseError("non-rational numeric exponent")
        if base.is_Rational and exp.q > 1:
            if base == 0 and exp < 0:
                raise ParseError("division by zero")
            if max(abs(base.p), base.q) >= 10 ** MAX_RADICAND_DIGITS or exp.q > 1000:
                raise ParseError("radicand too large")
        if abs(exp) > 1:
            p.spend(float(abs(exp)) * _digits_of(base) if abs(exp) < 10 ** 6 else MAX_DIGITS + 1)
    elif exp.is_Number and abs(exp) > 10 ** 4 and not isinstance(base, Symbol):  # (2x)^n distributes: 2^n * x^n
        raise ParseError("exponent too large")
    elif exp.is_Number and abs(exp) > 1:
        p.spend(float(abs(exp)) * _digits_of(base.as_coeff_Mul()[0]))
    if base == 0 and (exp.is_negative or exp == 0):
        raise ParseError("0 to a non-positive power")
    return base ** exp


def _factorial(p, n):
    if n.is_Number:
        if not n.is_Integer or n < 0 or n > 10 ** 6:
            raise ParseError("factorial argument")
        if n > MAX_FACTORIAL:  # 2004! stays unevaluated (compared structurally or through its logarithm's size)
            return sympy.factorial(n, evaluate=False)
        p.spend(math.lgamma(int(n) + 1) / math.log(10))
    elif not n.free_symbols:
        raise ParseError("factorial of a non-integer constant")
    return sympy.factorial(n)


def _binomial(p, n, k):
    if n.is_Number or k.is_Number:
        if not (n.is_Integer and k.is_Integer) or abs(n) > 10 ** 5:
            raise ParseError("binomial arguments")
        p.spend(int(abs(n)) * 0.302)  # log10(C(n, k)) <= n log10 2
    return sympy.binomial(n, k)


def _exprs(v):
    """The sympy expressions in a value, at any depth."""
    if _is_expr(v):
        return [v]
    return [e for x in v for e in _exprs(x)] if isinstance(v, (tuple, list)) else []


@lru_cache(maxsize=8192)
def _parse_normalized(s):
    """Parsed(value, has_decimal) for a normalised answer string, or None when it does not parse."""
    if not s or len(s) > MAX_ANSWER_CHARS:
        return None
    if _bracket_depth(s) > MAX_DEPTH:
        return None
    try:
        p = _Parser(tokenize(s))
        value = p.parse_answer()
        exprs = _exprs(value)
        symbols = set().union(*(e.free_symbols for e in exprs))
        if any(e.has(sympy.nan, sympy.zoo) for e in exprs) or len(symbols) > MAX_SYMBOLS:
            return None
        return Parsed(value, p.has_decimal)
    except Exception:  # ParseError, and anything sympy raises on an odd input; _Timeout propagates
        return None


def _bracket_depth(s):
    depth = best = 0
    for c in s:
        if c in "({[":
            depth += 1
            best = max(best, depth)
        elif c in ")}]":
            depth -= 1
    return best


# ----------------------------------------------------------------------------------------------------------------
# comparison, 1: numeric evaluation. One evaluator, two number systems. _DOUBLE (Python complex, cmath) is
# the fast first pass; mpmath at 40 digits (a private context per thread: mpmath's global one is shared
# state) decides whenever the fast pass fails or finds a difference, so that cancellation in double
# precision cannot mark a right answer wrong.

class _Invalid(Exception):
    pass


def _ctx(dps=40):
    """This thread's own mpmath context at dps digits."""
    ctxs = _local.__dict__.setdefault("ctxs", {})
    if dps not in ctxs:
        ctxs[dps] = mpmath.mp.__class__()
        ctxs[dps].dps = dps
    return ctxs[dps]


def _real_only(f):
    def g(x):
        if x.imag != 0:
            raise _Invalid()
        return complex(f(x.real))
    return g


_DOUBLE = SimpleNamespace(  # the slice of mpmath's context interface that _num uses, on Python complex numbers
    pi=complex(math.pi), e=complex(math.e), mpf=complex, mpc=complex, isfinite=cmath.isfinite, fabs=abs,
    sin=cmath.sin, cos=cmath.cos, tan=cmath.tan, asin=cmath.asin, acos=cmath.acos, atan=cmath.atan,
    sinh=cmath.sinh, cosh=cmath.cosh, tanh=cmath.tanh, log=cmath.log, exp=cmath.exp, log10=cmath.log10,
    cot=lambda x: 1 / cmath.tan(x), sec=lambda x: 1 / cmath.cos(x), csc=lambda x: 1 / cmath.sin(x),
    acot=lambda x: cmath.atan(1 / x), power=lambda b, x: b ** x, re=lambda x: x.real, im=lambda x: x.imag,
    floor=_real_only(math.floor), ceil=_real_only(math.ceil), gamma=_real_only(math.gamma),
    binomial=lambda n, k: _DOUBLE.gamma(n + 1) / (_DOUBLE.gamma(k + 1) * _DOUBLE.gamma(n - k + 1)))

_UNARY = {sympy.sin: "sin", sympy.cos: "cos", sympy.tan: "tan", sympy.cot: "cot", sympy.sec: "sec",
          sympy.csc: "csc", sympy.asin: "asin", sympy.acos: "acos", sympy.atan: "atan", sympy.acot: "acot",
          sympy.sinh: "sinh", sympy.cosh: "cosh", sympy.tanh: "tanh", sympy.log: "log", sympy.exp: "exp",
          sympy.Abs: "fabs"}
_TRIG = {sympy.sin, sympy.cos, sympy.tan, sympy.cot, sympy.sec, sympy.csc}
_MAX_MAGNITUDE = 1e6  # |log| of any intermediate value: bigger is an overflow, not a sample


def _num(e, env, ctx):
    """Value of a sympy expression at the point env (symbol -> number of ctx); _Invalid when undefined or huge."""
    _check_deadline()
    if e.is_Rational:
        return ctx.mpf(e.p) / e.q
    if e.is_Symbol:
        if e not in env:
            raise _Invalid()
        return env[e]
    if e is sympy.pi:
        return ctx.pi
    if e is sympy.E:
        return ctx.e
    if e is sympy.I:
        return ctx.mpc(0, 1)
    if e.is_Add:
        out = ctx.mpf(0)
        for a in e.args:
            out += _num(a, env, ctx)
        return out
    if e.is_Mul:
        out = ctx.mpf(1)
        for a in e.args:
            out *= _num(a, env, ctx)
        return _finite(ctx, out)
    if e.is_Pow:
        b, x = _num(e.base, env, ctx), _num(e.exp, env, ctx)
        if b == 0:
            if ctx.re(x) <= 0:
                raise _Invalid()
            return ctx.mpf(0)
        if abs(x) * (abs(ctx.log(b)) + 1) > _MAX_MAGNITUDE:
            raise _Invalid()
        if e.exp.is_Integer:
            return _finite(ctx, b ** int(e.exp))
        return _finite(ctx, ctx.power(b, x))
    f = e.func
    if f in _UNARY:
        x = _num(e.args[0], env, ctx)
        if f is sympy.exp and ctx.re(x) > _MAX_MAGNITUDE or f in _TRIG and abs(x) > 1e30:
            raise _Invalid()
        if f is sympy.log and x == 0:
            raise _Invalid()
        return _finite(ctx, getattr(ctx, _UNARY[f])(x))
    if f in (sympy.floor, sympy.ceiling):
        x = _num(e.args[0], env, ctx)
        if ctx.im(x) != 0 or abs(x) > 1e15:
            raise _Invalid()
        return ctx.mpf((ctx.floor if f is sympy.floor else ctx.ceil)(ctx.re(x)))
    if f is sympy.factorial:
        x = _num(e.args[0], env, ctx)
        if abs(x) > 1e6:
            raise _Invalid()
        return _finite(ctx, ctx.gamma(x + 1))
    if f is sympy.binomial:
        n, k = (_num(a, env, ctx) for a in e.args)
        if abs(n) > 1e5 or abs(k) > 1e5:
            raise _Invalid()
        return _finite(ctx, ctx.binomial(n, k))
    raise _Invalid()


def _finite(ctx, v):
    if not ctx.isfinite(v):
        raise _Invalid()
    return v


_NUM_ERRORS = (_Invalid, ValueError, TypeError, ZeroDivisionError, OverflowError, ArithmeticError)
_rng = random.Random(20250710)
_SAMPLES = [[round(0.3 + 2.0 * _rng.random(), 6) for _ in range(MAX_SYMBOLS)] for _ in range(N_POINTS)]


def _value(e, k, names, ctx):
    """e at sample point k (the same fixed pseudo-random point in [0.3, 2.3]^n for the same names), or None."""
    env = {s: ctx.mpf(_SAMPLES[k][j]) for j, s in enumerate(names)}
    try:
        return _num(e, env, ctx)
    except _NUM_ERRORS:
        return None


def _close(x, y, tol):
    scale = max(abs(x), abs(y))
    return abs(x - y) <= tol * scale or (tol == REL_TOL_EXACT and scale < 1e-30)


# ----------------------------------------------------------------------------------------------------------------
# comparison, 2: is the predicted value equal to the gold value

def _expr_equal(g, p, tol):
    """Equal values: exactly (sympy), else numerically, at N_POINTS sample points when there are variables."""
    if g == p:
        return True
    d = g - p  # sympy collects like terms: 1000! + 1 - 1000! is exactly 1
    if d == 0:
        return True
    if d.is_Rational:
        if tol == REL_TOL_EXACT:
            return False
        if g.is_Rational and p.is_Rational:
            return abs(d) <= Rational(tol) * max(abs(g), abs(p))
    symbols = g.free_symbols | p.free_symbols
    if len(symbols) > MAX_SYMBOLS:
        return False
    names = sorted(symbols, key=lambda s: s.name)
    valid = 0
    for k in range(N_POINTS if symbols else 1):
        if symbols:  # fast pass in double precision: agreement to 1e-9 (or tol) counts
            x, y = _value(g, k, names, _DOUBLE), _value(p, k, names, _DOUBLE)
            if x is not None and y is not None and _close(x, y, max(tol, 1e-9)):
                valid += 1
                continue
        ctx = _ctx()  # decide at 40 digits
        x, y = _value(g, k, names, ctx), _value(p, k, names, ctx)
        if x is None or y is None:
            continue
        if not _close(x, y, tol):
            return False
        valid += 1
    return valid >= (2 if symbols else 1)


def _equal(g, p, gdec, pdec):
    """Is the predicted value p equal to the gold value g? (structures compare recursively)"""
    _check_deadline()
    if _is_expr(g) and _is_expr(p):
        if gdec:  # the gold answer is itself a decimal (Minerva's 4.5e33, MATH's 3.21): 1e-4
            tol = REL_TOL_DECIMAL
        elif pdec and not g.is_Integer:  # a decimal for an exact answer needs 6-7 digits: 0.333333 for 1/3
            tol = REL_TOL_APPROX
        else:  # exact against exact, and any answer against an integer gold answer (26.9999 is not 27)
            tol = REL_TOL_EXACT
        return _expr_equal(g, p, tol)
    if isinstance(p, Approx):  # 1/3 \approx 0.333: the exact value; the rounded one too when the gold is a decimal
        return _equal(g, p.exact, gdec, pdec) or gdec and _equal(g, p.rounded, gdec, pdec)
    if isinstance(g, Approx):
        return _equal(g.exact, p, gdec, pdec)
    if isinstance(g, Equation) and isinstance(p, Equation):
        if all(_is_expr(v) for v in (g.lhs, g.rhs, p.lhs, p.rhs)):  # up to a factor; x = 5 is not y = 5
            return _proportional(g.lhs - g.rhs, p.lhs - p.rhs, gdec, pdec, positive=False)
        return _equal(g.lhs, p.lhs, gdec, pdec) and _equal(g.rhs, p.rhs, gdec, pdec)  # (p, q) = (3, 2)
    if isinstance(g, Equation) and g.named:
        return _equal(g.rhs, p, gdec, pdec)
    if isinstance(p, Equation) and p.named:
        return _equal(g, p.rhs, gdec, pdec)
    if isinstance(g, Ratio) or isinstance(p, Ratio):
        return _ratio_equal(g, p, gdec, pdec)
    if isinstance(g, Set) and len(g.items) == 1 and not isinstance(p, Set):
        return _equal(g.items[0], p, gdec, pdec)
    if isinstance(p, Set) and p.items and not isinstance(g, Set):  # {a}, and one value written twice (639/40, ...)
        return all(_equal(g, x, gdec, pdec) for x in p.items)
    if isinstance(g, Matrix) and isinstance(p, Bracketed) or isinstance(g, Bracketed) and isinstance(p, Matrix):
        m, s = (g, p) if isinstance(g, Matrix) else (p, g)  # a column (or row) vector is a tuple
        flat = [x for row in m.rows for x in row]
        if (len(m.rows) == 1 or len(m.rows[0]) == 1) and (s.open, s.close) == ("(", ")") and len(flat) == len(s.items):
            pairs = zip(flat, s.items) if isinstance(g, Matrix) else zip(s.items, flat)
            return all(_equal(a, b, gdec, pdec) for a, b in pairs)
        return False
    if type(g) is not type(p):
        return False
    if isinstance(g, Bracketed):
        if len(g.items) != len(p.items):
            return False
        if g.open != p.open and not _is_infinite(g.items[0]) or g.close != p.close and not _is_infinite(g.items[-1]):
            return False
        return all(_equal(a, b, gdec, pdec) for a, b in zip(g.items, p.items))
    if isinstance(g, Set):
        return _match_all(g.items, p.items, gdec, pdec)
    if isinstance(g, Union):
        return _match_all(g.parts, p.parts, gdec, pdec)
    if isinstance(g, Matrix):
        if [len(r) for r in g.rows] != [len(r) for r in p.rows]:
            return False
        return all(_equal(a, b, gdec, pdec) for ra, rb in zip(g.rows, p.rows) for a, b in zip(ra, rb))
    if isinstance(g, Relation):  # the same inequality up to a positive factor (x + y < 1 is 2x + 2y < 2)
        return g.op == p.op and _proportional(g.diff, p.diff, gdec, pdec, positive=g.op != "!=")
    return False


def _proportional(a, b, gdec, pdec, positive):
    """Is a = c b for a constant c != 0 (c > 0 when `positive`)? c is read at the sample points, at 40 digits."""
    if _equal(a, b, gdec, pdec) or not positive and _equal(a, -b, gdec, pdec):
        return True
    symbols = a.free_symbols | b.free_symbols
    if not symbols or len(symbols) > MAX_SYMBOLS:
        return False
    names, ctx = sorted(symbols, key=lambda s: s.name), _ctx()
    ratios = []
    for k in range(N_POINTS):
        x, y = _value(a, k, names, ctx), _value(b, k, names, ctx)
        if x is not None and y is not None and x != 0 and y != 0:
            ratios.append(x / y)
    tol = REL_TOL_DECIMAL if gdec else REL_TOL_APPROX if pdec else REL_TOL_EXACT
    c = ratios[0] if len(ratios) >= 2 else None
    if c is None or abs(ctx.im(c)) > tol * abs(c) or positive and ctx.re(c) <= 0:
        return False
    return all(_close(r, c, max(tol, 1e-30)) for r in ratios[1:])


def _ratio_equal(g, p, gdec, pdec):
    """a:b is the number a/b; ratios are equal when proportional (2:4:6 is 1:2:3), part by part when one has a
    zero part (a time such as 5:00 is not 6:00)."""
    gs, ps = (v.parts if isinstance(v, Ratio) else None for v in (g, p))
    if gs is None or ps is None:  # a ratio and a number
        r, v = (gs, p) if gs is not None else (ps, g)
        if len(r) != 2 or not _is_expr(v) or r[1].is_zero is not False:
            return False
        return _equal(r[0] / r[1], v, gdec, pdec) if gs is not None else _equal(v, r[0] / r[1], gdec, pdec)
    if len(gs) != len(ps):
        return False
    if any(x.is_zero is not False for x in gs + ps):
        return all(_equal(a, b, gdec, pdec) for a, b in zip(gs, ps))
    return all(_equal(gs[i] * ps[j], gs[j] * ps[i], gdec, pdec) for i in range(len(gs)) for j in range(i + 1, len(gs)))


def _is_infinite(v):
    return _is_expr(v) and v in (sympy.oo, -sympy.oo)


def _match_all(gs, ps, gdec, pdec):
    """Unordered, one-to-one: every gold element matches a distinct predicted element (bipartite matching)."""
    if len(ps) > len(gs) and len({_key(g) for g in gs}) == len(gs):  # (1,2), (3,4), (1,2): a set, when the gold
        ps = list({_key(p): p for p in ps}.values())  # answer repeats nothing (a repeat in it means multiplicity)
    if len(gs) != len(ps):
        return False
    same = {}  # first pair off identical elements (a reordered list), cheaply by hash
    for j, p in enumerate(ps):
        same.setdefault(_key(p), []).append(j)
    rest_g = []
    for g in gs:
        js = same.get(_key(g))
        if js:
            js.pop()
        else:
            rest_g.append(g)
    gs, ps = rest_g, [ps[j] for js in same.values() for j in js]
    owner = {}  # predicted index -> gold index

    def augment(i, seen):
        for j, p in enumerate(ps):
            if j not in seen and _equal(gs[i], p, gdec, pdec):
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return all(augment(i, set()) for i in range(len(gs)))


def _key(v):
    return v if _is_expr(v) else repr(v)


def _string_key(s):
    return re.sub(r"\s+", "", s)


def _text_key(s):
    s = re.sub(r"[\s{}]", "", s).lower()
    m = re.fullmatch(r"\(([a-z])\)", s)  # (B) is B
    return m.group(1) if m else s


# ----------------------------------------------------------------------------------------------------------------
# the entry points: verify, is_parseable, and the gold answers of the datasets

def _candidates(answer):
    """(normalised string, [Parsed]) for an answer string; a percentage has two values (62.5% and 0.625)."""
    s, percent = normalize(answer)
    parsed = _parse_normalized(s)
    if parsed is None:
        return s, []
    out = [parsed]
    if percent and _is_expr(parsed.value):  # 62.5% also matches 0.625
        out.append(Parsed(parsed.value / 100, parsed.has_decimal))
    return s, out


def _verify(completion, gold):
    if not isinstance(gold, str) or not isinstance(completion, str):
        return False
    if "\\boxed" in gold or "\\fbox" in gold:
        gold = last_boxed(gold) or ""
    gold = gold.strip()
    pred = extract_answer(completion)
    if not gold or not pred or len(gold) > MAX_ANSWER_CHARS or len(pred) > MAX_ANSWER_CHARS:
        return False
    gs, gvals = _candidates(gold)
    ps, pvals = _candidates(pred)
    if not gs or not ps:
        return False
    if _string_key(gs) == _string_key(ps):
        return True
    if not gvals:  # a text answer (a name, a word): compared as text only
        return _text_key(gs) == _text_key(ps)
    return any(_equal(g, p, gdec, pdec) for g, gdec in gvals for p, pdec in pvals)


def _on_alarm(signum, frame):
    raise _Timeout()


def _gold_text(gold):
    """A gold answer as text: a string as it is; a number (AMC23 stores 27.0) as its value, 27.0 -> '27', 0.5 ->
    '0.5', 1e-05 -> '0.00001'. bool is refused: True is a data error, not the number 1 (a yes/no answer is the
    string 'yes')."""
    if isinstance(gold, str):
        return gold
    if isinstance(gold, bool) or not isinstance(gold, numbers.Real):
        raise TypeError(f"verify: the gold answer must be a str, int or float, got {type(gold).__name__} {gold!r:.60}")
    if isinstance(gold, numbers.Integral):
        return str(int(gold))
    x = float(gold)
    if not math.isfinite(x):
        raise ValueError(f"verify: the gold answer is {x}, not a number that can be matched")
    return str(int(x)) if x.is_integer() else format(decimal.Decimal(repr(x)), "f")  # 1e-05 -> '0.00001'


def verify(completion, gold):
    """
    True when the final answer of `completion` (see extract_answer) is equivalent to the gold answer (a string, or
    an int or float that stands for its value). False on an empty gold answer, on anything unparseable that is
    not the same text, and on anything that runs past TIME_LIMIT_S. Never raises on model output; a gold answer
    of another type (None, bool, list, ...) is a caller's error: TypeError.
    """
    gold = _gold_text(gold)
    _local.deadline = time.perf_counter() + TIME_LIMIT_S
    use_alarm = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None) and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    try:
        try:
            if use_alarm:  # backstop for a single long sympy call that the deadline checks cannot interrupt
                signal.signal(signal.SIGALRM, _on_alarm)
                signal.setitimer(signal.ITIMER_REAL, max(TIME_LIMIT_S, 0.0) + 0.5)
            return bool(_verify(completion, gold))
        finally:
            _local.deadline = None
            if use_alarm:
                try:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                finally:
                    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    except (_Timeout, Exception):  # a late alarm lands here too
        return False


def grade(text, problem):
    """The accuracy reward of a completion: a multiple-choice problem's option letter (GPQA), else verify's answer
    equivalence."""
    return verify_choice(text, problem["answer"]) if problem.get("choices") else verify(text, problem["answer"])


def format_ok(text, pattern):
    """The format reward's test, as the released GHPO code computes it (docs/method.md, "One training step", 2)."""
    return re.match(pattern, text, re.DOTALL | re.MULTILINE) is not None


def is_parseable(answer):
    """Can verify() score against this gold answer: it parses into a value, or is a short text answer (a word)."""
    if not isinstance(answer, str) or not answer.strip() or len(answer) > MAX_ANSWER_CHARS:
        return False
    _local.deadline = time.perf_counter() + TIME_LIMIT_S
    try:
        s, _ = normalize(answer)
        if _parse_normalized(s) is not None:
            return True
        return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ,.:'\-]{0,39}", s) is not None  # words, times, ratios
    except (_Timeout, Exception):
        return False
    finally:
        _local.deadline = None


DATASETS = ("math", "math500", "gsm8k", "aime24", "amc23", "olympiadbench", "minerva")


def _field(row, key, dataset):
    if not isinstance(row, dict) or key not in row:
        raise ValueError(f"gold_answer: a {dataset!r} row needs the field {key!r}; got "
                         f"{sorted(row) if isinstance(row, dict) else type(row).__name__}")
    return row[key]


def gold_answer(row, dataset):
    """The gold answer string of a dataset row; None when it is empty or not parseable (callers skip and count)."""
    if dataset in ("math", "math500"):  # 'answer' is the last \boxed{} of 'solution'
        ans = row.get("answer") if isinstance(row, dict) and row.get("answer") else \
            last_boxed(_field(row, "solution", dataset))
    elif dataset == "gsm8k":  # worked solution ending in '#### 1,234'
        text = _field(row, "answer", dataset)
        ans = text.rsplit("####", 1)[1].replace(",", "") if "####" in text else None
    elif dataset == "aime24":  # strings, some with leading zeros ('025')
        ans = str(_field(row, "answer", dataset))
    elif dataset == "amc23":  # floats such as 27.0
        x = _field(row, "answer", dataset)
        ans = str(int(x)) if isinstance(x, (int, float)) and float(x).is_integer() else str(x)
    elif dataset == "olympiadbench":  # a list of strings, possibly $-wrapped
        fa = _field(row, "final_answer", dataset)
        ans = ", ".join(str(a) for a in fa) if isinstance(fa, list) else str(fa)
    elif dataset == "minerva":  # the last \boxed{} of the solution
        ans = last_boxed(_field(row, "solution", dataset))
    else:
        raise ValueError(f"gold_answer: unknown dataset {dataset!r}; expected one of {DATASETS}")
    ans = ans.strip() if isinstance(ans, str) else None
    return ans if ans and is_parseable(ans) else None
