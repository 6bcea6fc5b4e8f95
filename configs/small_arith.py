# The first attempt at the CPU demo (docs/demo.md, "First attempt"; small.py until the third): a tiny
# Qwen2 (~0.8M parameters) learns repeated modular addition (data/arith.py). The base model learns levels 1-3 by SFT
# (30% of its rows end with the first steps of a level 4-5 problem, never its last step or answer); RL draws prompts
# from levels 1-6; "hard" = levels 4-5. GRPO beats GHPO on it.
out_dir = "out/small_arith"
task = "arith"
method = "ghpo"
train_levels = (1, 2, 3, 4, 5, 6)
eval_levels = (1, 2, 3, 4, 5, 6)
easy_levels = (1, 2, 3)
hard_levels = (4, 5)
eval_per_level = 300
n_layer = 4
n_embd = 128
n_head = 4
n_kv_head = 2
n_inner = 384
base_steps = 800
base_lr = 2e-3
base_hint_frac = 0.5
base_partial_frac = 0.3
base_partial_levels = (4, 5)
rl_steps = 60
prompts_per_step = 32
group_size = 8
max_new_tokens = 64
lr = 5e-5
