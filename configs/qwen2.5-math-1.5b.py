# GHPO on a real checkpoint: Qwen2.5-Math-1.5B trained on MATH levels 3-5 with worked solutions (the paper's data),
# evaluated without hints on the paper's six benchmarks (AIME24, MATH-500, OlympiadBench, AMC23, Minerva, GPQA-Diamond:
# its CSV is not shipped, docs/usage.md) and GSM8K as an extra. One GPU of 80 GB, or of 40 GB (below).
# Hyperparameters: docs/method.md, "The released 7B recipe", with the batch scaled down to one GPU.
# Put the Hugging Face folder (config.json, *.safetensors, tokenizer.json) at init_from, or pass --init_from=PATH.
out_dir = "out/qwen2.5-math-1.5b"
init_from = "checkpoints/Qwen2.5-Math-1.5B"
device = "cuda"
dtype = "bfloat16"            # weights, activations and KV cache; AdamW updates float32 master copies (ghpo.py)
# data: MATH levels 3-5 (data/LICENSES.md), the recipe's system prompt in the Qwen chat format
task = "math"
train_file = "data/math_train_l345.jsonl"
train_levels = (3, 4, 5)
chat_template = True
system_prompt = ("You are a helpful AI Assistant that provides well-reasoned and detailed responses. You first think "
                 "about the reasoning process as an internal monologue and then provide the user with the answer. "
                 "Respond in the following format: <think>\n...\n</think>\n<answer>\n...\n</answer>")
benchmarks = ("aime24", "math500", "olympiadbench", "amc23", "minerva", "gpqa_diamond", "gsm8k")
bench_limit = 0               # all rows; --bench_limit=50 for a quick look
aime_samples = 32             # the paper's AIME24 number is the mean over 32 samples
# sampling and reward (recipe)
group_size = 8
max_new_tokens = 2048
temperature = 1.0
top_k = 50
top_p = 1.0
format_reward = 0.5           # the paper's reward: accuracy 1.0 + format 0.5, the format being the released code's test
format_pattern = r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"  # of the system prompt's tag format
method = "ghpo"
hint_ratios = (0.25, 0.5, 0.75)
hint_in_answer = False        # the released code: the hint follows its template in the user message
start_hint_step = 0
# optimisation (recipe: AdamW 0.9/0.999, eps 1e-8, no weight decay, lr 1e-6 cosine with 10% warm-up, clip 1.0)
lr = 1e-6
warmup_frac = 0.1
weight_decay = 0.0
grad_clip = 1.0
ppo_epochs = 1
kl_coef = 0.0
loss_norm = "token"
# scaled to one GPU: 16 prompts x 8 samples per step (the recipe: 196 prompts over 8 GPUs). 556 steps = one pass over
# the 8,885 problems. torchrun --nproc_per_node=N shards these prompts, so raise prompts_per_step with N to keep the
# per-GPU load.
#
# Memory: ghpo.py plans it before the first evaluation and prints the plan (rollout.memory_plan; docs/gpu.md has the
# table, tests/test_memory.py recomputes it with the real tokenizer and data):
#   resident   1.54B parameters x (2 B bfloat16 weight + 4 B float32 master + 8 B AdamW moments) = 20.1 GiB
#   KV cache   28 layers x (keys + values) x 2 heads x 128 x 2 B = 28 KiB a token; the longest hinted training prompt
#              (2,573 tokens) + 2,048 new tokens pass the 4,096-token context, so a row holds 4,096 slots, 112 MiB.
#              The cache is allocated once and kept for the run: 256 rows on an 80 GB card (a rollout's 128 rows in
#              one call, an evaluation 256 prompts a call, AIME 8 problems x 32 samples)
#   update     float32 gradients (5.7 GiB) + a micro-batch of 2 rows x 4,096 tokens' activations: 22.9 GiB at worst,
#              so the update peaks at 71.5 GiB on 80 GB. On a 40 GB card this config does not fit: micro_batch=1 and
#              aime_samples=8 leave one group of 8 rows a call.
# A run that cannot hold the resident state and one group stops before its first evaluation, with one line saying so.
prompts_per_step = 16
micro_batch = 2               # rows per forward/backward (the update's activations grow with it: above)
rl_steps = 556
ckpt_interval = 20
eval_interval = 0
