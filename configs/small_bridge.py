# The CPU demo's previous design, "bridge" (docs/demo.md, "The same recipe on other machines"): a 0.8M-parameter
# Qwen2 on the countdown task (data/arith.py) at levels 1-8, hard = levels 6-8. RL starts from the base model shipped
# for it, data/small_bridge_base/ (base A of docs/demo.md, made by `python -m data.demo_base data/small_bridge_base
# --config small_bridge.py --threads=1` on an AVX-512 Xeon; the command gives another base on another machine).
# The recipe: the base learns levels 1-3 by SFT and both ends of a level 4-8 problem, never its middle: 30% of its
# rows end with a hard problem's first one or two steps, and 15% of its examples are a hard problem whose steps up to
# the last are given as an answer-opening hint and whose last step and answer are learned.
# Every key not set here (the model, 60 RL steps of 32 prompts x 8, lr 5e-5) is ghpo.py's default.
out_dir = "out/small_bridge"
init_from = "data/small_bridge_base"
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
