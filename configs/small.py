# The CPU demo (README, "The CPU demo"; docs/demo.md, first section): a 0.8M-parameter Qwen2 on a countdown task of
# repeated modular addition (data/arith.py), one `37+8=45, 4 left` line per step; RL and evaluation on levels 1-3
# (easy) and 7-9 (hard), no level in between.
# The base model half-knows the hard levels by design: it reads levels 1-3 solved correctly and, in 30% of its
# examples, a level 7-9 problem solved by a careless student whose every step slips (its result one too high) with
# probability 0.6, so it gets a hard step right with probability about 0.4, a rate its data set. Unhinted, 7-9 right
# steps in a row are rare at temperature 1 (GRPO's hard groups are mostly all wrong); a 0.75 hint leaves two or three,
# and the steps GHPO then practises are the kind the unhinted problem needs.
# RL starts from the shipped base model data/small_base/ (base b0 of docs/demo.md, made by `python -m data.demo_base
# data/small_base --config small.py --threads=1`), so every machine starts from the same weights; its made.json says
# where it was made and what it scored there, and the run prints that beside what it scores here.
# --init_from=scratch trains the base from this recipe instead (cached in out/base); compare.py --base_seeds=0,1,2
# compares over several such bases.
# Every key not set here (the model, 60 RL steps, G = 8, lr 5e-5) is ghpo.py's default.
out_dir = "out/small"
init_from = "data/small_base"
countdown = True
hint_in_answer = True
train_levels = (1, 2, 3, 7, 8, 9)
eval_levels = (1, 2, 3, 7, 8, 9)
hard_levels = (7, 8, 9)
eval_per_level = 100
probe_per_level = 50
prompts_per_step = 16
base_steps = 800
base_lr = 2e-3
base_hint_frac = 0.5
base_slip_frac = 0.3
base_slip_levels = (7, 8, 9)
base_slip_rate = 0.6
max_new_tokens = 120
