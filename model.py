"""
A compact Qwen2 / Qwen2.5 decoder, numerically matching transformers' Qwen2ForCausalLM, that loads and saves
Hugging Face checkpoints (config.json + safetensors + tokenizer.json). Reads top to bottom:
config -> RMSNorm -> rotary embeddings -> attention (GQA, q/k/v bias, KV cache) -> SwiGLU MLP -> block -> Qwen2
-> checkpoint I/O -> tokenizer and chat format.
"""
import functools
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, asdict, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

SUPPORTED_ARCHITECTURES = ("Qwen2ForCausalLM",)

# -----------------------------------------------------------------------------
# config


@dataclass
class Qwen2Config:
    vocab_size: int = 151936
    hidden_size: int = 896
    intermediate_size: int = 4864
    num_hidden_layers: int = 24
    num_attention_heads: int = 14
    num_key_value_heads: int = 2
    head_dim: int = 0                  # 0 means hidden_size // num_attention_heads (Qwen2 never sets it)
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None

    def __post_init__(self):
        if not self.head_dim:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads={self.num_key_value_heads}")


def config_from_hf(hf: dict, source: str = "config.json") -> Qwen2Config:
    """Build a Qwen2Config from a Hugging Face config.json dict; unsupported features are errors, not surprises."""
    if not isinstance(hf, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(hf).__name__}")
    archs = hf.get("architectures") or [None]
    if archs[0] not in SUPPORTED_ARCHITECTURES and hf.get("model_type") != "qwen2":
        raise ValueError(f"{source}: architecture {archs[0]!r} (model_type {hf.get('model_type')!r}) is not "
                         f"supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)} (model_type 'qwen2')")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}   # transformers 5 moved rope_theta in here
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ValueError(f"{source}: rope_type {rope_type!r} is not supported (only 'default')")
    if hf.get("use_sliding_window"):
        raise ValueError(f"{source}: use_sliding_window=true is not supported")
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{source}: hidden_act {hf['hidden_act']!r} is not supported (only 'silu')")
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    known = {f.name for f in fields(Qwen2Config)} - {"rope_theta"}
    kwargs = {k: v for k, v in hf.items() if k in known and v is not None}
    missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                           "num_attention_heads") if k not in kwargs]
    if missing:
        raise ValueError(f"{source}: missing required key(s) {', '.join(missing)}")
    sizes = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "max_position_embeddings")
    bad = [f"{k}={kwargs[k]!r}" for k in sizes if k in kwargs and (type(kwargs[k]) is not int or kwargs[k] < 0)]
    if bad or not isinstance(theta, (int, float)) or isinstance(theta, bool):
        raise ValueError(f"{source}: not a size: {', '.join(bad) or f'rope_theta={theta!r}'}")
    kwargs.setdefault("num_key_value_heads", hf["num_attention_heads"])
    kwargs.setdefault("tie_word_embeddings", False)   # transformers' Qwen2Config default
    return Qwen2Config(rope_theta=float(theta), **kwargs)


def config_to_hf(config: Qwen2Config, dtype: torch.dtype) -> dict:
    hf = {k: v for k, v in asdict(config).items() if v is not None}
    if hf["head_dim"] == config.hidden_size // config.num_attention_heads:
        del hf["head_dim"]
    hf.update(architectures=list(SUPPORTED_ARCHITECTURES), model_type="qwen2", hidden_act="silu",
              use_sliding_window=False, attention_dropout=0.0, initializer_range=0.02, use_cache=True,
              rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
              torch_dtype=str(dtype).removeprefix("torch."))
    return hf

# -----------------------------------------------------------------------------
# element-wise pieces: plain functions, each fused into one kernel by torch.compile on CUDA

FUSE_ON_CUDA = True  # False: run them op by op on CUDA too (the CPU always does, so its numbers never change)


def fused_on_cuda(fn):
    """fn on CPU tensors; on CUDA tensors, fn compiled by torch.compile (made at the first CUDA call; dynamic shapes,
    so new batch sizes and spans need no recompilation). A decode step launches ~45 kernels per layer op by op and
    ~20 with these fused, which is what a CUDA graph of the step then replays."""
    compiled = None

    @functools.wraps(fn)
    def run(*args):
        nonlocal compiled
        if not (FUSE_ON_CUDA and args[0].is_cuda):
            return fn(*args)
        compiled = compiled or torch.compile(fn, dynamic=True)
        return compiled(*args)
    return run


@fused_on_cuda
def rms_norm(x, weight, eps):
    xf = x.float()  # normalise in float32, as transformers does, then cast back before the gain
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


@fused_on_cuda
def apply_rotary(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin  # rotate-half convention of Qwen2


@fused_on_cuda
def silu_mul(gate, up):
    return F.silu(gate) * up


@fused_on_cuda
def masked_softmax(att, mask, scale, dtype):
    """softmax(att * scale + mask) over the last dim, in float32 (as SDPA's), returned in dtype."""
    return (att.float() * scale + mask).softmax(-1).to(dtype)

# -----------------------------------------------------------------------------
# layers


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def rotary_cos_sin(positions, head_dim, theta, dtype):
    """cos/sin tables for integer positions (B, T), computed in float32 like transformers' default RoPE."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float, device=positions.device) / head_dim))
    freqs = positions[..., None].float() * inv_freq  # (B, T, D/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, D)
    return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]  # (B, 1, T, D) each


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = (config.num_attention_heads, config.num_key_value_heads,
                                                      config.head_dim)
        self.q_proj = nn.Linear(config.hidden_size, self.n_head * self.head_dim, bias=True)
        self.k_proj = nn.Linear(config.hidden_size, self.n_kv_head * self.head_dim, bias=True)
        self.v_proj = nn.Linear(config.hidden_size, self.n_kv_head * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, config.hidden_size, bias=False)

    def forward(self, x, cos, sin, kv=None, slots=None, mask=None):
        """x (B, T, C). Without kv: causal self-attention over x. With kv=(k_cache, v_cache), each (B, Hkv, Tmax, D):
        without slots (a prefill from position 0) this call's keys/values are written at [0, T) and x attends
        causally to itself; with slots (B*Hkv*T,) (see Qwen2.forward) they are written at those flat cache rows and x
        attends to the first S cache slots under the additive mask (B, 1, T, S): 0 where key j is visible, -inf not."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if kv is not None and slots is None:  # prefill: the cache may be a strided view (every G-th row)
            kv[0][:, :, :T] = k
            kv[1][:, :, :T] = v
        elif kv is not None:
            k_cache, v_cache = kv
            k_cache.view(-1, self.head_dim).index_copy_(0, slots, k.reshape(-1, self.head_dim))  # (B*Hkv*T, D) rows
            v_cache.view(-1, self.head_dim).index_copy_(0, slots, v.reshape(-1, self.head_dim))
            S = mask.shape[-1]
            y = cached_attention(q, k_cache[:, :, :S], v_cache[:, :, :S], mask)  # (B, H, T, D)
            return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))
        # causal attention over this call's tokens: flash attention on CUDA (no mask, so GQA needs no repeated keys)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_head != self.n_kv_head)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))  # (B, T, C)


def cached_attention(q, k, v, mask):
    """Attention to a KV cache under an additive mask, on every device: q (B, H, T, D), k/v (B, Hkv, S, D), mask
    (B, 1, T, S) -> (B, H, T, D). The H/Hkv query heads that share a key/value head are the rows of one matmul, so
    keys are never repeated. SDPA is not used here: with a mask and GQA, CUDA's SDPA falls back to its math kernel,
    which repeats the keys and values of every head group; on the CPU plain matmuls beat SDPA for one query."""
    B, H, T, D = q.shape
    Hkv = k.shape[1]
    att = q.reshape(B, Hkv, H // Hkv * T, D) @ k.transpose(-1, -2)  # (B, Hkv, H/Hkv*T, S), rows (head, t)
    att = masked_softmax(att.view(B, Hkv, H // Hkv, T, -1), mask[:, :, None], D ** -0.5, v.dtype)  # (B,Hkv,H/Hkv,T,S)
    return (att.view(B, Hkv, H // Hkv * T, -1) @ v).view(B, H, T, D)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, kv=None, slots=None, mask=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, kv, slots, mask)
        return x + self.mlp(self.post_attention_layernorm(x))

# -----------------------------------------------------------------------------
# the model


class Qwen2(nn.Module):
    # parameter names mirror transformers' Qwen2ForCausalLM, so state_dict keys equal checkpoint keys

    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.config = config
        self.model = nn.ModuleDict(dict(
            embed_tokens=nn.Embedding(config.vocab_size, config.hidden_size),
            layers=nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers)),
            norm=RMSNorm(config.hidden_size, config.rms_norm_eps),
        ))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @classmethod
    def from_config(cls, config: Qwen2Config, seed=0, dtype=torch.float32, device=None):
        """A freshly initialised model (normal(0, 0.02) weights, zero biases, unit norms) for training from scratch."""
        gen = torch.Generator().manual_seed(seed)
        model = cls(config)
        for name, p in model.named_parameters():
            with torch.no_grad():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    std = 0.02 / math.sqrt(2 * config.num_hidden_layers) if name.endswith(("o_proj.weight",
                                                                                          "down_proj.weight")) else 0.02
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
        return model.to(dtype=dtype, device=device)

    def forward(self, idx, kv_cache=None, pos=None, span=None, return_hidden=False):
        """idx (B, T) token ids -> logits (B, T, V), or final normed hidden states (B, T, C) with return_hidden.
        kv_cache: from new_kv_cache() (or views of its rows). Without pos, a prefill: idx fills cache slots [0, T)
        (rows right-padded: a short row's padding slots are overwritten by its own continuation before anything
        attends to them). With pos (B,), the absolute position of idx[:, 0] in each row (rows may sit at different
        positions): idx is written there and attends to the cache's first `span` slots, which must cover every
        row's last position; span None computes it (a host sync), a caller that knows a bound passes it (no sync,
        a fixed shape for CUDA graphs)."""
        B, T = idx.shape
        positions = torch.arange(T, device=idx.device).expand(B, T)  # (B, T)
        x = self.model.embed_tokens(idx)  # (B, T, C)
        slots = mask = None
        if kv_cache is not None and pos is not None:  # built once, shared by every layer
            positions = pos[:, None] + positions  # (B, T) absolute slots of this call
            if span is None:
                span = int(positions.max()) + 1  # keys beyond every row's last slot are never read
            if span > kv_cache[0].shape[3]:
                raise ValueError(f"position {span - 1} is beyond the KV cache length {kv_cache[0].shape[3]}")
            visible = torch.arange(span, device=idx.device) <= positions[:, :, None]  # (B, T, S)
            mask = torch.zeros(visible.shape, dtype=x.dtype, device=idx.device).masked_fill_(~visible, float("-inf"))
            mask = mask[:, None]  # (B, 1, T, S) additive
            Hkv, Tmax = kv_cache[0].shape[2], kv_cache[0].shape[3]
            heads = torch.arange(B * Hkv, device=idx.device).view(B, Hkv, 1)  # (B, Hkv, 1) row b, head h: b*Hkv + h
            slots = (heads * Tmax + positions[:, None, :]).flatten()  # (B*Hkv*T,) flat cache rows of this call
        elif kv_cache is not None and T > kv_cache[0].shape[3]:
            raise ValueError(f"a prefill of {T} tokens is longer than the KV cache ({kv_cache[0].shape[3]})")
        cos, sin = rotary_cos_sin(positions, self.config.head_dim, self.config.rope_theta, x.dtype)
        for i, block in enumerate(self.model.layers):
            kv = None if kv_cache is None else (kv_cache[0][i], kv_cache[1][i])
            x = block(x, cos, sin, kv, slots, mask)
        h = self.model.norm(x)  # (B, T, C)
        return h if return_hidden else self.lm_head(h)  # (B, T, V)

    def new_kv_cache(self, batch_size, max_len):
        """Preallocated keys and values for every layer: two tensors (L, B, Hkv, max_len, D)."""
        c, p = self.config, self.lm_head.weight
        shape = (c.num_hidden_layers, batch_size, c.num_key_value_heads, max_len, c.head_dim)
        return torch.zeros(shape, dtype=p.dtype, device=p.device), torch.zeros(shape, dtype=p.dtype, device=p.device)

    # ---- checkpoint I/O

    @classmethod
    def from_pretrained(cls, path, dtype=None, device=None):
        """Load a Hugging Face Qwen2 checkpoint folder: config.json + model.safetensors (or a sharded
        model.safetensors.index.json). dtype defaults to the checkpoint's torch_dtype, else float32."""
        cfg_path = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(f"{cfg_path}: not found (a Hugging Face checkpoint folder needs config.json)")
        with open(cfg_path, "rb") as f:
            try:
                hf = json.loads(f.read())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{cfg_path}: invalid JSON ({e})") from None
        config = config_from_hf(hf, cfg_path)
        if dtype is None:
            name = hf.get("torch_dtype") or hf.get("dtype") or "float32"
            dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name, torch.float32)
        tensors = load_safetensors(path)  # name -> (tensor, file it came from)
        with torch.device("meta"):
            model = cls(config)
        expected = {k: v.shape for k, v in model.state_dict().items()}
        if config.tie_word_embeddings:
            expected.pop("lm_head.weight")
            tensors.pop("lm_head.weight", None)  # some tied checkpoints also store it; the embedding is the truth
        for name, (t, file) in tensors.items():
            if name not in expected:
                raise ValueError(f"{file}: unexpected tensor {name!r} (not part of a Qwen2 model with this config)")
            if tuple(t.shape) != tuple(expected[name]):
                raise ValueError(f"{file}: tensor {name!r} has shape {tuple(t.shape)}, "
                                 f"expected {tuple(expected[name])} from {cfg_path}")
        missing = sorted(set(expected) - set(tensors))
        if missing:
            raise ValueError(f"{path}: missing tensor(s) {', '.join(missing[:5])}"
                             f"{' ...' if len(missing) > 5 else ''} in the safetensors files")
        return cls.from_state_dict(config, {k: t.to(dtype=dtype, device=device) for k, (t, _) in tensors.items()})

    @classmethod
    def from_state_dict(cls, config: Qwen2Config, state):
        """A model whose parameters are these tensors (not copied): {name: tensor}, named as state_dict() names them;
        a tied model's lm_head.weight may be left out."""
        with torch.device("meta"):
            model = cls(config)
        model.load_state_dict(state, strict=False, assign=True)
        if config.tie_word_embeddings:
            model.lm_head.weight = model.model.embed_tokens.weight
        return model

    def save_pretrained(self, path, max_shard_bytes=5 * 2**30):
        """Write config.json and safetensors (sharded above max_shard_bytes) atomically: a temporary folder
        beside `path` is filled, then renamed over it."""
        path = os.path.abspath(path)
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if self.config.tie_word_embeddings:
            state.pop("lm_head.weight")
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
        try:
            shards, size = [{}], 0
            for k, v in state.items():
                nbytes = v.numel() * v.element_size()
                if shards[-1] and size + nbytes > max_shard_bytes:
                    shards.append({})
                    size = 0
                shards[-1][k] = v
                size += nbytes
            if len(shards) == 1:
                save_file(shards[0], os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
            else:
                weight_map = {}
                for i, shard in enumerate(shards):
                    name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                    save_file(shard, os.path.join(tmp, name), metadata={"format": "pt"})
                    weight_map.update({k: name for k in shard})
                total = sum(v.numel() * v.element_size() for v in state.values())
                with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
                    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(config_to_hf(self.config, self.lm_head.weight.dtype), f, indent=2)
            if os.path.exists(path):  # keep files we do not own (tokenizer.json, ...) by copying them across
                for name in os.listdir(path):
                    src = os.path.join(path, name)
                    if os.path.isfile(src) and not os.path.exists(os.path.join(tmp, name)) \
                            and not name.startswith("model") and name != "config.json":
                        shutil.copy2(src, tmp)
                old = tempfile.mkdtemp(prefix=".old-", dir=parent)
                os.rename(path, os.path.join(old, "x"))
                os.rename(tmp, path)
                shutil.rmtree(old)
            else:
                os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def load_safetensors(path):
    """name -> (tensor, file) from model.safetensors or the shards listed in model.safetensors.index.json."""
    single, index = os.path.join(path, "model.safetensors"), os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, "rb") as f:
            try:
                weight_map = json.loads(f.read())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{index}: invalid JSON ({e})") from None
        weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: no 'weight_map' object")
        files = sorted(set(weight_map.values()))
    elif os.path.isfile(single):
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{path}: no model.safetensors or model.safetensors.index.json "
                                "(only safetensors checkpoints are read; pickles are never loaded)")
    tensors = {}
    for name in files:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            raise FileNotFoundError(f"{file}: listed in {index} but not found")
        try:
            loaded = load_file(file)
        except Exception as e:  # safetensors' SafetensorError or an OSError: cut short, overwritten, not safetensors
            raise ValueError(f"{file}: not a readable safetensors file ({e})") from None
        for k, t in loaded.items():
            tensors[k] = (t, file)
    return tensors

# -----------------------------------------------------------------------------
# tokenizer and chat format


def load_tokenizer(path):
    """The `tokenizers` tokenizer of a folder's tokenizer.json."""
    from tokenizers import Tokenizer
    file = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file}: not found")
    try:
        return Tokenizer.from_file(file)
    except Exception as e:  # the tokenizers library raises a bare Exception for a file it cannot parse
        raise ValueError(f"{file}: not a readable tokenizer.json ({e})") from None


def chat_prompt(messages, add_generation_prompt=True):
    """Qwen chat format: <|im_start|>role\\ncontent<|im_end|>\\n ... then <|im_start|>assistant\\n."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def stop_token_ids(tokenizer):
    """Ids of <|im_end|> and <|endoftext|> that this tokenizer knows."""
    ids = [tokenizer.token_to_id(t) for t in ("<|im_end|>", "<|endoftext|>")]
    return [i for i in ids if i is not None]
