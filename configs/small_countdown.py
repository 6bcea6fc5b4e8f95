# An experiment beside the CPU demo (docs/demo.md, "Second attempt"): the same task with a countdown on every step line,
# hints that open the answer at a line boundary, a base that reads the first two steps of levels 4-7, and hard =
# levels 6-7 (base accuracy <= 10%). GHPO and GRPO tie on it; docs/demo.md has the numbers. Every key not set here
# (the 0.8M-parameter model, 60 RL steps of 32 prompts x 8, lr 5e-5) is the default of ghpo.py or data/demo_base.py.
out_dir = "out/small_countdown"
countdown = True
hint_in_answer = True
train_levels = (1, 2, 3, 4, 5, 6, 7)
eval_levels = (1, 2, 3, 4, 5, 6, 7)
hard_levels = (6, 7)
base_steps = 800
base_lr = 2e-3
base_hint_frac = 0.5
base_partial_frac = 0.3
base_partial_levels = (4, 5, 6, 7)
base_partial_steps = 2
max_new_tokens = 112
