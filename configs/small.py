# The CPU demo (README, "Results at a glance"; docs/demo.md): ghpo.py's defaults, written out here so that the README's
# command names it. A 0.8M-parameter Qwen2 on a countdown task of repeated modular addition (data/arith.py), one
# `37+8=45, 4 left` line per step; RL (60 steps of 16 prompts x 8 samples, lr 5e-5) and evaluation (100 held-out
# problems per level, greedy, no hints) on levels 1-3 (easy) and 7-9 (hard), no level in between. Hints open the
# answer (hint_in_answer=True): the first round(steps x w) step lines, from which the model continues.
# RL starts from the shipped base model data/small_base/ (init_from), made by `python -m data.demo_base` at 1 thread
# on an AVX-512 Xeon: it read levels 1-3 solved correctly and, in 30% of its examples, levels 7-9 solved by a careless
# student whose every step slips (one too high) with probability 0.6, so it gets a hard step right about 0.4 of the
# time. Unhinted, 7-9 right steps in a row are rare at temperature 1 (GRPO's hard groups are mostly all wrong); a 0.75
# hint leaves two or three, and the steps GHPO then practises are the kind the unhinted problem needs. Its made.json
# says where it was made and what it scored there; the run prints that beside what it scores here.
# Another base of the recipe: `python -m data.demo_base [--base_seed=S]`, then --init_from=<the folder it prints>;
# compare.py --base_seeds=0,1,2 does that for several.
out_dir = "out/small"
