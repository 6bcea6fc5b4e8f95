# The CPU demo (README, "The CPU demo"; docs/demo.md): a 0.8M-parameter Qwen2 learns a countdown task of repeated
# modular addition (data/arith.py) at levels 1-8, one `37+8=45, 4 left` line per step; hard = levels 6-8.
# RL starts from the shipped base model data/small_base/ (made by the recipe below: `python -m data.demo_base
# data/small_base --config small.py --threads=1`), so every machine starts from the same weights; its made.json says
# where it was made and what it scored there, and the run prints that beside what it scores here.
# --init_from=scratch trains the base from the recipe instead (cached in out/base): on another CPU, BLAS or thread
# count that gives another base model, and docs/demo.md shows how much the comparison then changes.
# The recipe: the base learns levels 1-3 by SFT and both ends of a level 4-8 problem, never its middle: 30% of its
# rows end with a hard problem's first one or two steps, and 15% of its examples are a hard problem whose steps up to
# the last are given as an answer-opening hint and whose last step and answer are learned.
# Every key not set here (the model, 60 RL steps of 32 prompts x 8, lr 5e-5) is ghpo.py's default.
out_dir = "out/small"
init_from = "data/small_base"
countdown = True
hint_in_answer = True
train_levels = (1, 2, 3, 4, 5, 6, 7, 8)
eval_levels = (1, 2, 3, 4, 5, 6, 7, 8)
hard_levels = (6, 7, 8)
base_steps = 800
base_lr = 2e-3
base_hint_frac = 0.5
base_partial_frac = 0.3
base_partial_levels = (4, 5, 6, 7, 8)
base_partial_steps = 2
base_tail_frac = 0.15
base_tail_steps = 1
max_new_tokens = 112
