# Candidate CPU demo design "slips" (issue 14, docs/demo.md): the base model half-knows the hard levels by design.
# It reads levels 1-3 solved correctly and levels 7-9 solved in full by a careless student whose every step slips
# (its result one too high) with probability 0.6, so it is right at a hard-level step with probability about 0.4,
# a rate set by its data and not by the float sums of its training. Unhinted, a level 7-9 problem needs 7-9 right
# steps in a row (0.4^8: about one sample in 600, so GRPO's groups are all wrong); a 0.75 hint leaves two or three
# (about one in six), and the steps GHPO then practises are the same kind of step the unhinted problem needs.
# RL and evaluation on levels 1-3 and 7-9 only: no level in between for GRPO to climb on.
out_dir = "out/slip"
init_from = "scratch"
base_cache = "out/base-slip"
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
