"""
What the model reads: a problem as a prompt, with or without a GHPO hint (docs/method.md, "Hints").

A hint of ratio w gives away the start of the problem's reference solution, in one of two places:
  in the user message (the released code's): the problem, then `hint_template`, then the first
      round(len(solution) * w) characters of the solution;
  opening the answer (hint_in_answer): the first round(steps * w) step lines of the solution, never its answer line,
      as the start of the model's own answer, so the model continues from a line boundary as if it had written them.
Hint tokens are prompt tokens: they never enter the loss. ghpo.py builds RL's and the evaluation's prompts here, and
data/demo_base.py the demo base's, so that the base reads the prompts RL will show it.
"""
from dataclasses import dataclass

from model import chat_prompt

# the words between the problem and a hint in the user message, as the released code appends them
HINT_TEMPLATE = ("\n The following text is the beginning part of the answer, which you can refer to for solving the "
                 "problem:\n")


@dataclass(frozen=True)
class PromptFormat:
    hint_in_answer: bool = False      # False: the hint follows hint_template in the user message; True: it opens
                                      # the answer
    hint_template: str = HINT_TEMPLATE
    chat_template: bool = False       # the Qwen chat format (real models) or plain text (the demo's tiny model)
    system_prompt: str = ""           # system message when chat_template is on


def step_lines(solution):
    """The step lines of a worked solution, without its final answer line."""
    return solution.split("\n")[:-1]


def solution_prefix(solution, ratio, fmt):
    """The part of the reference solution a hint of this ratio gives away: its first round(len * ratio) characters,
    or with hint_in_answer its first round(steps * ratio) step lines, each ending with its newline."""
    if ratio <= 0:
        return ""
    if not fmt.hint_in_answer:
        return solution[:round(len(solution) * ratio)]
    steps = step_lines(solution)
    return "".join(line + "\n" for line in steps[:round(len(steps) * ratio)])


def prompt_text(problem, ratio, fmt):
    """The prompt of a problem ({"problem", "solution", ...}) with a hint of this ratio (0: none): the user message
    (plus the hint after hint_template, as the released code appends it), in the chat format or as plain text ending
    in a newline, then with hint_in_answer the hint opening the answer."""
    hint = solution_prefix(problem["solution"], ratio, fmt)
    user = problem["problem"] + (fmt.hint_template + hint if ratio > 0 and not fmt.hint_in_answer else "")
    system = [{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else []
    prompt = chat_prompt(system + [{"role": "user", "content": user}]) if fmt.chat_template else user + "\n"
    return prompt + (hint if fmt.hint_in_answer else "")
