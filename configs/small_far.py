# Candidate CPU demo design "no bridge" (issue 14, docs/demo.md): RL and evaluation on levels 1-3 and 7-9 only, so
# no level between the base model's easy levels and the hard ones gives GRPO a group to climb on; the base reads the
# first one or two steps of level 7-9 problems and learns to finish one from its last step, never its middle.
out_dir = "out/far"
init_from = "scratch"
base_cache = "out/base-far"
countdown = True
hint_in_answer = True
train_levels = (1, 2, 3, 7, 8, 9)
eval_levels = (1, 2, 3, 7, 8, 9)
hard_levels = (7, 8, 9)
eval_per_level = 200
base_steps = 1000
base_lr = 2e-3
base_hint_frac = 0.5
base_partial_frac = 0.3
base_partial_levels = (7, 8, 9)
base_partial_steps = 2
base_tail_frac = 0.15
base_tail_steps = 1
max_new_tokens = 120
