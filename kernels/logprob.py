"""
Per-token log-probs (and entropies) straight from final hidden states and the lm_head weight, never holding the
(N, V) logits: with Qwen's 151,936-word vocab those logits, not the model, are what runs out of memory in RL.
Three implementations of one function, picked by `impl`:
- "reference": full logits, log_softmax, gather. Obviously correct, (N, V)-sized; the tests and users check against it.
- "torch": the same math over row chunks whose float32 logits stay within CHUNK_BYTES (the CPU path).
- "triton": a Triton kernel that does the matmul itself with tl.dot over vocab tiles and keeps an online
  log-sum-exp (and the entropy's sum p*z) per row, so logits only ever exist one tile at a time (the CUDA path).
Logits are accumulated in float32 and divided by the sampling temperature before the softmax.
"""
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl


# TRITON_INTERPRET=1 (set before triton is imported) runs kernels on the CPU through numpy: a correctness tool only.
# The interpreter gets bf16 arithmetic wrong, so loads are upcast to float32 there, and its cost is per program and
# loop step, so it gets wide tiles.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

# float32 logits held per row chunk by the chunked paths: 441 rows at V=151936. Every chunk streams the (V, H) weight
# twice and its gradient once, and the CPU GEMMs run thin operands slowly, so taller chunks are faster: at N=2048,
# H=896 the fused loss took 0.85x the reference's time with 441-row chunks and 0.91x with 220 (bench/logprob.py)
CHUNK_BYTES = 256 * 2**20
IMPLS = ("auto", "triton", "torch", "reference")


def chunk_rows(V, chunk_size=None):
    """Rows per chunk: the caller's choice, or as many as keep a chunk's float32 logits within CHUNK_BYTES."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return int(chunk_size)
    return max(1, CHUNK_BYTES // (4 * V))


def resolve_impl(impl, device):
    """'auto' -> 'triton' on CUDA tensors, 'torch' elsewhere; explicit choices are checked, not second-guessed."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "triton" if device.type == "cuda" else "torch"
    if impl == "triton" and device.type != "cuda" and not INTERPRET:
        raise ValueError(f"impl='triton' on {device.type} tensors needs a CUDA device or TRITON_INTERPRET=1 set "
                         f"before triton is imported")
    return impl


def check_head_inputs(hidden, weight, targets, temperature):
    """hidden (N, H), weight (V, H), targets (N,) int -> (N, H, V), with errors that name the offending argument."""
    if hidden.dim() != 2:
        raise ValueError(f"hidden must be (N, H), got shape {tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"weight must be (V, H={hidden.shape[1]}), got shape {tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets must be ({hidden.shape[0]},), got shape {tuple(targets.shape)}")
    if targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must be int64 or int32, got {targets.dtype}")
    if hidden.device != weight.device or targets.device != hidden.device:
        raise ValueError(f"hidden, weight, targets must share a device, got {hidden.device}, {weight.device}, "
                         f"{targets.device}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    N, H = hidden.shape
    V = weight.shape[0]
    if N and (int(targets.min()) < 0 or int(targets.max()) >= V):
        raise ValueError(f"targets must lie in [0, V={V}), got values in [{int(targets.min())}, {int(targets.max())}]")
    return N, H, V

# -----------------------------------------------------------------------------
# PyTorch: the reference and the chunked path


def logprobs_reference(hidden, weight, targets, temperature=1.0, upcast=True):
    """Full (N, V) logits -> log_softmax -> gather. Returns logp (N,) (differentiable) and entropy (N,). upcast: in
    float32 (float64 inputs stay float64); upcast=False: every op in the inputs' dtype, as plain PyTorch code would
    run (the same-precision baseline of bench/kernels.py)."""
    dtype = torch.promote_types(hidden.dtype, torch.float32) if upcast else hidden.dtype
    logp_all = torch.log_softmax(hidden.to(dtype) @ weight.to(dtype).T / temperature, dim=-1)  # (N, V)
    logp = logp_all.gather(-1, targets[:, None].long())[:, 0]  # (N,)
    with torch.no_grad():  # the entropy is a statistic, never part of a loss
        entropy = -(logp_all.exp() * logp_all).sum(-1)  # (N,) -sum_v p log p
    return logp, entropy


def chunk_logits(h, w, temperature, storage=None):
    """h (C, H), w (V, H) float32 -> temperature-scaled logits (C, V), a view of (V, C) memory: MKL runs that
    orientation faster for small C; storage: a flat float32 tensor of >= V*C elements reused across chunks, which
    spares the page faults that fresh allocations above malloc's mmap threshold pay."""
    C, V = h.shape[0], w.shape[0]
    out = None if storage is None else storage[:V * C].view(V, C)
    return torch.mm(w, (h / temperature).T, out=out).T  # dividing the small operand divides the logits


def logprobs_chunked(hidden, weight, targets, temperature=1.0, return_entropy=False, chunk_size=None):
    """The reference's math over row chunks: only (chunk, V) logits exist at any time."""
    N, V = hidden.shape[0], weight.shape[0]
    w = weight.float()  # (V, H): float32 operands give float32 accumulation on the CPU (a no-op copy for float32)
    logp = torch.empty(N, dtype=torch.float32, device=hidden.device)
    entropy = torch.empty(N, dtype=torch.float32, device=hidden.device) if return_entropy else None
    C = min(chunk_rows(V, chunk_size), max(N, 1))
    storage = [torch.empty(V * C, device=hidden.device) for _ in range(1 + return_entropy)]  # reused by every chunk
    for i in range(0, N, C):
        c = min(C, N - i)
        z = chunk_logits(hidden[i:i + c].float(), w, temperature, storage[0])  # (c, V)
        m = z.amax(dim=-1, keepdim=True)  # (c, 1)
        z_target = z.gather(1, targets[i:i + c, None].long())  # (c, 1)
        if return_entropy:
            e = torch.sub(z, m, out=storage[1][:V * c].view(V, c).T).exp_()  # (c, V) exp(z - m)
            s = e.sum(dim=-1, keepdim=True)  # (c, 1)
            lse = m + s.log()
            entropy[i:i + c] = (lse - e.mul_(z).sum(dim=-1, keepdim=True) / s)[:, 0]  # H = lse - E_p[z]
        else:
            lse = m + z.sub_(m).exp_().sum(dim=-1, keepdim=True).log()  # in place: the logits are spent
        logp[i:i + c] = (z_target - lse)[:, 0]
    return logp, entropy

# -----------------------------------------------------------------------------
# Triton


@triton.jit
def logits_tile(h_ptr, w_ptr, rows, cols, N, V, H, stride_h, stride_w, inv_temp,
                BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr,
                UPCAST: tl.constexpr):
    """(BLOCK_N, BLOCK_V) float32 tile of (hidden @ weight^T) / temperature for int64 row and vocab indices;
    rows >= N and cols >= V read zeros. UPCAST: float32 operands (interpreter, mixed or float32 dtypes)."""
    acc = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
    for k0 in range(0, H, BLOCK_H):
        ks = k0 + tl.arange(0, BLOCK_H)
        h = tl.load(h_ptr + rows[:, None] * stride_h + ks[None, :],
                    mask=(rows[:, None] < N) & (ks[None, :] < H), other=0.0)  # (BLOCK_N, BLOCK_H)
        w = tl.load(w_ptr + cols[None, :] * stride_w + ks[:, None],
                    mask=(cols[None, :] < V) & (ks[:, None] < H), other=0.0)  # (BLOCK_H, BLOCK_V), W^T tile
        if UPCAST:
            h = h.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(h, w, acc, input_precision="ieee")  # ieee: no silent tf32 rounding of float32 operands
    return acc * inv_temp


@triton.jit
def _logprob_kernel(h_ptr, w_ptr, targets_ptr, max_ptr, sumexp_ptr, sumexpz_ptr, target_logit_ptr,
                    N, V, H, stride_h, stride_w, inv_temp, V_PER_SPLIT,
                    BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr,
                    UPCAST: tl.constexpr):
    """One program: BLOCK_N rows x one vocab split. Streams the split's vocab tiles, keeping per row the running max m,
    sum exp(z - m), sum exp(z - m) * z (for the entropy) and the target's logit; writes them for the split."""
    pid_n = tl.program_id(0)
    split = tl.program_id(1)
    rows = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    row_ok = rows < N
    targets = tl.load(targets_ptr + rows, mask=row_ok, other=-1).to(tl.int64)
    v_begin = split.to(tl.int64) * V_PER_SPLIT
    v_end = tl.minimum(v_begin + V_PER_SPLIT, V)  # every split holds at least one column (see the launcher)
    m = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
    s = tl.zeros((BLOCK_N,), dtype=tl.float32)
    sz = tl.zeros((BLOCK_N,), dtype=tl.float32)
    zt = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for v0 in range(v_begin, v_end, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)  # (BLOCK_V,)
        col_ok = cols < v_end
        z = logits_tile(h_ptr, w_ptr, rows, cols, N, v_end, H, stride_h, stride_w, inv_temp,
                        BLOCK_N, BLOCK_V, BLOCK_H, UPCAST)  # (BLOCK_N, BLOCK_V), 0 at columns past the split
        z_max = tl.max(tl.where(col_ok[None, :], z, float("-inf")), axis=1)
        m_new = tl.maximum(m, z_max)
        rescale = tl.exp(m - m_new)  # exp(-inf) = 0 on the first tile
        e = tl.where(col_ok[None, :], tl.exp(z - m_new[:, None]), 0.0)  # (BLOCK_N, BLOCK_V)
        s = s * rescale + tl.sum(e, axis=1)
        sz = sz * rescale + tl.sum(e * z, axis=1)
        zt += tl.sum(tl.where(cols[None, :] == targets[:, None], z, 0.0), axis=1)
        m = m_new
    out = split.to(tl.int64) * N + rows
    tl.store(max_ptr + out, m, mask=row_ok)
    tl.store(sumexp_ptr + out, s, mask=row_ok)
    tl.store(sumexpz_ptr + out, sz, mask=row_ok)
    tl.store(target_logit_ptr + out, zt, mask=row_ok)


class Tiles(NamedTuple):
    """Launch shape of a tl.dot kernel: a (BLOCK_N rows, BLOCK_V vocab) tile of logits per step, BLOCK_H hidden
    elements per step of the matmul, and Triton's num_warps and num_stages (buffers of the pipelined hidden loop)."""
    BLOCK_N: int
    BLOCK_V: int
    BLOCK_H: int
    num_warps: int
    num_stages: int


# GPU launch shapes by kernel and operand type, chosen with `ptxas -v` for A100 (sm_80) and H100 (sm_90) at H=1536,
# V=151936 (python tests/test_kernels_compile.py 80 90 prints registers, spills and shared memory of every launch).
# bfloat16 operands go to tensor cores; at 4 warps the log-prob kernel (a 64x128 tile's matmul plus its online
# softmax) sat at the 255-register cap and spilled a little, at 8 warps it needs ~180. float32 operands take ieee FMA
# dots (tf32 would round them), whose operands sit in registers a BLOCK_H-wide slice at a time: 64-wide steps at 4
# warps spilled ~35 KB per thread (log-prob) and 5.6 KB (logits, sm_80); 16-wide steps at 8 warps spill nothing and
# leave headroom below 255 registers on both targets.
GPU_TILES = {  # (kernel, float32 operands) -> Tiles
    ("logprob", False): Tiles(64, 128, 64, 8, 3),
    ("logprob", True): Tiles(64, 128, 16, 8, 2),
    ("logits", False): Tiles(64, 128, 64, 4, 3),
    ("logits", True): Tiles(64, 128, 16, 8, 2),
}
INTERPRET_TILES = Tiles(16, 4096, 64, 1, 1)  # the interpreter pays per program and loop step, not per element


def tiles(kernel, fma, block_n=None, block_v=None, block_h=None):
    """The Tiles of `kernel` ('logprob' or 'logits'); fma: float32 or mixed operands (no tensor cores); block_*:
    overrides (the tests' ragged tiles)."""
    t = INTERPRET_TILES if INTERPRET else GPU_TILES[kernel, fma]
    return t._replace(BLOCK_N=block_n or t.BLOCK_N, BLOCK_V=block_v or t.BLOCK_V, BLOCK_H=block_h or t.BLOCK_H)


def fma_operands(hidden, weight):
    """float32 or mixed-dtype operands: both are read as float32 and the dot runs on FMA units, not tensor cores."""
    return hidden.dtype != weight.dtype or hidden.dtype == torch.float32


def logprobs_triton(hidden, weight, targets, temperature=1.0, return_entropy=False, v_per_split=None,
                    block_n=None, block_v=None, block_h=None):
    """Launch _logprob_kernel over (row tiles, vocab splits), then merge the splits' partial log-sum-exps."""
    N, H = hidden.shape
    V = weight.shape[0]
    fma = fma_operands(hidden, weight)
    t = tiles("logprob", fma, block_n, block_v, block_h)
    hidden, weight, targets = hidden.contiguous(), weight.contiguous(), targets.contiguous()
    # vocab splits give the GPU work when N is small; each split is whole tiles and none is empty
    v_per_split = v_per_split or (V if INTERPRET else 4096)
    v_per_split = triton.cdiv(min(v_per_split, V), t.BLOCK_V) * t.BLOCK_V
    splits = triton.cdiv(V, v_per_split)
    parts = torch.empty(4, splits, N, dtype=torch.float32, device=hidden.device)  # max, sumexp, sumexp*z, target
    grid = (triton.cdiv(N, t.BLOCK_N), splits)
    _logprob_kernel[grid](hidden, weight, targets, parts[0], parts[1], parts[2], parts[3],
                          N, V, H, hidden.stride(0), weight.stride(0), 1.0 / temperature, v_per_split,
                          UPCAST=INTERPRET or fma, **t._asdict())
    m, s, sz, zt = parts  # (splits, N) each
    m_all = m.max(0).values  # (N,)
    rescale = torch.exp(m - m_all)  # (splits, N)
    s_all = (s * rescale).sum(0)  # (N,)
    lse = m_all + torch.log(s_all)  # (N,)
    logp = zt.sum(0) - lse  # only the split holding the target contributed to zt
    entropy = lse - (sz * rescale).sum(0) / s_all if return_entropy else None  # H = lse - E_p[z]
    return logp, entropy

# -----------------------------------------------------------------------------
# the entry point


@torch.no_grad()
def fused_logprobs(hidden, weight, targets, temperature=1.0, return_entropy=False, impl="auto", chunk_size=None):
    """hidden (N, H), weight (V, H) lm_head, targets (N,) -> log p(target) (N,) float32 under softmax(logits / T),
    plus the entropy (N,) of that distribution when return_entropy. No grad (old/reference log-probs, evaluation).
    impl: 'auto' | 'triton' | 'torch' (chunked) | 'reference' (full logits; for checking)."""
    check_head_inputs(hidden, weight, targets, temperature)
    impl = resolve_impl(impl, hidden.device)
    if impl == "reference":
        logp, entropy = logprobs_reference(hidden, weight, targets, temperature)
    elif impl == "torch":
        logp, entropy = logprobs_chunked(hidden, weight, targets, temperature, return_entropy, chunk_size)
    else:
        logp, entropy = logprobs_triton(hidden, weight, targets, temperature, return_entropy)
    return (logp, entropy) if return_entropy else logp
