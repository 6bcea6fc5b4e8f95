# The CPU demo (README, "The CPU demo"): a 0.8M-parameter Qwen2 learns a countdown task of repeated modular
# addition (data/arith.py) at levels 1-8, one `37+8=45, 4 left` line per step. The base model learns levels 1-3 by SFT
# and both ends of a level 4-8 problem, never its middle: 30% of its rows end with a hard problem's first one or two
# steps, and 15% of its examples are a hard problem whose steps up to the last are given as an answer-opening hint and
# whose last step and answer are learned. hard = levels 6-8. Every key not set here (the model, 60 RL steps of
# 32 prompts x 8, lr 5e-5) is the default of ghpo.py or data/demo_base.py.
out_dir = "out/small"
countdown = True
hint_in_answer = True
train_levels = (1, 2, 3, 4, 5, 6, 7, 8)
eval_levels = (1, 2, 3, 4, 5, 6, 7, 8)
hard_levels = (6, 7, 8)
base_steps = 700  # 600 steps leave the arithmetic unlearned, 800 steps a base that hints barely help (docs/demo.md)
base_lr = 2e-3
base_hint_frac = 0.5
base_partial_frac = 0.3
base_partial_levels = (4, 5, 6, 7, 8)
base_partial_steps = 2
base_tail_frac = 0.15
base_tail_steps = 1
max_new_tokens = 112
