"""
Per-GPU memory of configs/qwen2.5-7b.py (Qwen2.5-7B, FSDP2 over 8 ranks), as arithmetic from the model's real
parameter counts (built on the meta device) plus one measurement: the bytes of activations autograd saves per token
per decoder block, at Qwen2.5-7B's width in bfloat16, counted on the CPU by a saved-tensors hook over a 2-block
model (the CPU attention kernel; CUDA's flash attention saves about as much). Estimates for a GPU, not a GPU run.
Last line: `memory_7b: state_gb=... rollout_gb=... update_gb=... act_kb_per_token_layer=... peak_over_80gb=...`.

    python bench/memory_7b.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import Qwen2, Qwen2Config

GB = 1e9
ranks, rows, row_tokens, micro_batch = 8, 112, 2400, 1  # the config: 14 prompts x 8 per rank, ~2.4k tokens a row
config = Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                     num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False)  # Qwen2.5-7B
with torch.device("meta"):
    full = Qwen2(config)
n = sum(p.numel() for p in full.parameters())
block = sum(p.numel() for p in full.model.layers[0].parameters())
root = n - config.num_hidden_layers * block  # embeddings, final norm, lm_head

# measured: activations saved for the backward, per token and block (bfloat16, a 2-block model at full width)
small = Qwen2.from_config(Qwen2Config(**{**config.__dict__, "num_hidden_layers": 2, "vocab_size": 1024}),
                          dtype=torch.bfloat16).train()
T, saved = 256, {}
params = {p.untyped_storage().data_ptr() for p in small.parameters()}
def keep(t):
    saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return t
with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
    small(torch.randint(0, 1024, (1, T)), return_hidden=True)
act = sum(v for k, v in saved.items() if k not in params) / T / 2  # bytes per token per block

state = n * (4 + 4 + 8) / ranks  # float32 weight, gradient and AdamW moment shards
copy = n * 2  # the gathered bfloat16 copy that samples
kv = rows * row_tokens * config.num_hidden_layers * 2 * config.num_key_value_heads * config.head_dim * 2
update = root * (2 + 4) + 2 * block * (2 + 4) + act * config.num_hidden_layers * row_tokens * micro_batch
print(f"Qwen2.5-7B: {n / 1e9:.2f}B parameters ({block / 1e6:.0f}M per block, {root / 1e6:.0f}M root)")
print(f"replicated training state (fsdp=False): {n * 16 / GB:.1f} GB per GPU")
print(f"FSDP2 over {ranks}: sharded state {state / GB:.1f} GB")
print(f"  rollout: + bf16 copy {copy / GB:.1f} GB + KV cache {kv / GB:.1f} GB ({rows} rows x {row_tokens} tokens)"
      f" = {(state + copy + kv) / GB:.1f} GB")
print(f"  update:  + root unit bf16 + fp32 grads {root * 6 / GB:.1f} GB + 2 blocks {2 * block * 6 / GB:.1f} GB"
      f" + activations {act / 1e3:.0f} KB/token/block x {config.num_hidden_layers} x {row_tokens}"
      f" = {act * config.num_hidden_layers * row_tokens / GB:.1f} GB -> {(state + update) / GB:.1f} GB")
peak = max(state + copy + kv, state + update)
print(f"memory_7b: state_gb={state / GB:.1f} rollout_gb={(state + copy + kv) / GB:.1f} "
      f"update_gb={(state + update) / GB:.1f} act_kb_per_token_layer={act / 1e3:.0f} peak_over_80gb={peak / 80e9:.2f}")
