# The paper's headline run: Qwen2.5-7B (base) trained with GHPO on MATH levels 3-5 with worked solutions, evaluated
# without hints. 8 GPUs of 80 GB under FSDP2:  torchrun --standalone --nproc_per_node=8 ghpo.py --config qwen2.5-7b.py
# Hyperparameters: docs/method.md, "The released 7B recipe". Put the Hugging Face folder
# (config.json, *.safetensors, tokenizer.json) at init_from, or pass --init_from=PATH.
#
# Memory per GPU (estimates, python bench/memory_7b.py; not yet run on GPUs). Qwen2.5-7B: 7.62B parameters (28 layers, width 3584, MLP 18944,
# 28 query / 4 key-value heads of 128, vocabulary 152064, untied lm_head). Replicated, its float32 master weights,
# gradients and AdamW moments alone are 7.62B x 16 B = 122 GB: no single GPU holds them. FSDP2 over 8 GPUs:
#   sharded state    7.62B x (4 weight + 4 grad + 8 AdamW) B / 8                              = 15.2 GB
#   rollout          + gathered bfloat16 copy 7.62B x 2 B                                     = 15.2 GB
#                    + KV cache 112 rows x ~2.4k tokens x 57 KB (28 layers x 2 x 4 x 128 x 2 B) = 15.4 GB
#                      (26 GB if every row reached 2048 prompt + 2048 completion tokens)      -> ~46-57 GB
#   update           (the copy freed) + the root unit gathered (embeddings + lm_head, bf16)  =  2.2 GB
#                    + its float32 gradients before the reduce-scatter                        =  4.4 GB
#                    + ~2 decoder blocks gathered with their float32 gradients                =  2.8 GB
#                    + activations of micro_batch=1 row of ~2.4k tokens: 236 KB per token per block
#                      (measured on the CPU in bf16 at this width) x 28 blocks, no recomputation = 15.9 GB
#                                                                                             -> ~41 GB
# Loading: each rank reads the bfloat16 checkpoint (15 GB host RAM per rank) and holds it in float32 on its GPU
# (30 GB) until fully_shard has cut it into shards.
out_dir = "out/qwen2.5-7b"
init_from = "checkpoints/Qwen2.5-7B"
device = "cuda"
dtype = "bfloat16"            # compute (and the sampling copy and KV cache); the shards AdamW updates are float32
fsdp = True                   # FSDP2: weights, gradients and AdamW state sharded over the 8 ranks
# data: MATH levels 3-5 (data/LICENSES.md), the recipe's system prompt in the Qwen chat format
task = "math"
train_file = "data/math_train_l345.jsonl"
train_levels = (3, 4, 5)
chat_template = True
system_prompt = ("You are a helpful AI Assistant that provides well-reasoned and detailed responses. You first think "
                 "about the reasoning process as an internal monologue and then provide the user with the answer. "
                 "Respond in the following format: <think>\n...\n</think>\n<answer>\n...\n</answer>")
# the paper's table has GPQA-Diamond where this has GSM8K: data/ holds no GPQA
benchmarks = ("aime24", "math500", "olympiadbench", "amc23", "minerva", "gsm8k")
bench_limit = 0               # all rows; --bench_limit=50 for a quick look
aime_samples = 32             # the paper's AIME24 number is the mean over 32 samples
# sampling and reward (recipe)
group_size = 8
max_new_tokens = 2048
temperature = 1.0
top_k = 50
top_p = 1.0
format_reward = 0.5           # accuracy 1.0 + format 0.5
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
# batch: the paper's 112 prompts x 8 samples per step, 14 prompts (112 rows) per GPU; the released recipe's 196 is
# not a multiple of 8 ranks. 160 steps: two passes over the 8,885 problems, the length of the paper's training curves.
prompts_per_step = 112
micro_batch = 1               # rows per forward/backward (see the activations above)
rl_steps = 160
ckpt_interval = 20            # each: dcp/ (float32 weights 30 GB + AdamW moments 61 GB, all ranks) + model/ (bf16, 15 GB)
eval_interval = 0
