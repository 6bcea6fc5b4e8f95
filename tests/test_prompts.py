"""prompts.py: the hint in the user message (the released code's template and character prefix), the hint that opens
the answer at a line boundary, and the chat format; and the demo task's lines (data/arith.py) that a hint cuts."""
import pytest

from data.arith import build_tokenizer, level_problems, make_problem
from prompts import HINT_TEMPLATE, PromptFormat, prompt_text, solution_prefix
from verify import verify

IN_MESSAGE, IN_ANSWER = PromptFormat(hint_in_answer=False), PromptFormat(hint_in_answer=True)


def test_hint_is_template_plus_character_prefix():
    p = level_problems(4)[0]
    sol = p["solution"]
    assert HINT_TEMPLATE == ("\n The following text is the beginning part of the answer, which you can refer to for "
                             "solving the problem:\n")  # the released code's words
    assert prompt_text(p, 0.0, IN_MESSAGE) == p["problem"] + "\n"
    for w in (0.25, 0.5, 0.75):
        assert solution_prefix(sol, w, IN_MESSAGE) == sol[:round(len(sol) * w)]
        assert prompt_text(p, w, IN_MESSAGE) == p["problem"] + HINT_TEMPLATE + sol[:round(len(sol) * w)] + "\n"
    chat = PromptFormat(chat_template=True, system_prompt="Be careful.")
    assert prompt_text(p, 0.25, chat) == (f"<|im_start|>system\nBe careful.<|im_end|>\n<|im_start|>user\n"
                                          f"{p['problem']}{HINT_TEMPLATE}{sol[:round(len(sol) * 0.25)]}<|im_end|>\n"
                                          "<|im_start|>assistant\n")


def test_hint_in_answer_opens_the_answer_at_a_line_boundary():
    p = level_problems(5)[0]
    steps = p["solution"].split("\n")[:-1]
    assert len(steps) == 5
    for w, k in ((0.25, 1), (0.5, 2), (0.75, 4)):  # round(5 * w) step lines (0.5 -> 2: Python rounds half to even)
        prefix = "".join(s + "\n" for s in steps[:k])
        assert solution_prefix(p["solution"], w, IN_ANSWER) == prefix
        assert prompt_text(p, w, IN_ANSWER) == p["problem"] + "\n" + prefix  # nothing in the user message
        assert p["solution"].startswith(prefix) and "boxed" not in prefix
    assert prompt_text(p, 0.0, IN_ANSWER) == p["problem"] + "\n"
    chat = PromptFormat(hint_in_answer=True, chat_template=True)
    assert prompt_text(p, 0.25, chat) == (f"<|im_start|>user\n{p['problem']}<|im_end|>\n<|im_start|>assistant\n"
                                          + steps[0] + "\n")


@pytest.mark.parametrize("fmt", [IN_MESSAGE, IN_ANSWER])
def test_no_hint_without_a_ratio(fmt):
    p = level_problems(3)[7]
    assert solution_prefix(p["solution"], 0.0, fmt) == "" and HINT_TEMPLATE not in prompt_text(p, 0.0, fmt)


def test_countdown_lines_say_how_many_steps_are_left():
    p = make_problem(37, 8, 3)
    assert p["problem"] == "Start with 37. Add 8 to it 3 times, keeping only the last two digits. What is the result?"
    assert p["solution"] == "37+8=45, 2 left\n45+8=53, 1 left\n53+8=61, 0 left\n\\boxed{61}" and p["answer"] == "61"
    assert make_problem(5, -9, 1)["solution"] == "5-9=96, 0 left\n\\boxed{96}"  # the last two digits
    assert verify(p["solution"], p["answer"])
    tok = build_tokenizer([HINT_TEMPLATE])
    for q in level_problems(9)[:50] + level_problems(1)[:50]:  # every token is known and decodes back
        ids = tok.encode(q["problem"] + "\n" + q["solution"] + HINT_TEMPLATE).ids
        assert tok.token_to_id("[UNK]") not in ids
        assert tok.decode(ids) == q["problem"] + "\n" + q["solution"] + HINT_TEMPLATE
