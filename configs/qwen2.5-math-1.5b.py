# GHPO on a real checkpoint: Qwen2.5-Math-1.5B trained on MATH levels 3-5 with worked solutions (the paper's data),
# evaluated without hints on the paper's six benchmarks (AIME24, MATH-500, OlympiadBench, AMC23, Minerva, GPQA-Diamond:
# its CSV is not shipped, README) and GSM8K as an extra. One 80 GB GPU.
# Hyperparameters: docs/method.md, "The released 7B recipe", with the batch scaled down to one GPU.
# Put the Hugging Face folder (config.json, *.safetensors, tokenizer.json) at init_from, or pass --init_from=PATH.
out_dir = "out/qwen2.5-math-1.5b"
init_from = "checkpoints/Qwen2.5-Math-1.5B"
device = "cuda"
dtype = "bfloat16"            # weights, activations and KV cache; AdamW updates float32 master copies (ghpo.py):
                              # 1.5B params -> 3 GB bf16 + 3 GB grads + 6 GB master + 12 GB moments
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
# scaled to one GPU: 16 prompts x 8 samples per step (the recipe: 196 prompts over 8 GPUs); the bfloat16 KV cache of
# 128 rows x ~2.4k tokens is ~9 GB. 556 steps = one pass over the 8,885 problems. torchrun --nproc_per_node=N
# shards these prompts, so raise prompts_per_step with N to keep the per-GPU load.
prompts_per_step = 16
micro_batch = 2               # rows per forward/backward: activations of ~2 x 2.4k tokens through 28 layers
rl_steps = 556
ckpt_interval = 20
eval_interval = 0
