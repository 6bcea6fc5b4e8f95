"""
The GHPO policy loss (docs/method.md, "The objective"; paper Eq. 1) as one fused op from final hidden states to a scalar.
Per completion token t of sequence i, with ratio p = exp(logp - logp_old):
    l = -min(p * A_i, clip(p, 1 - eps_low, 1 + eps_high) * A_i) + beta * KL_k3,   KL_k3 = exp(ref - logp) - (ref - logp) - 1
normalised over tokens (norm="token": sum of l / number of tokens, the released code's "bnpo"), per sequence
(norm="sequence": Eq. 1's 1/G sum_i 1/|o_i| sum_t l) or by a constant (norm="dr_grpo": sum of l / (rows x the
completion budget), TRL's "dr_grpo", Liu et al. 2025). Every way loss = sum_t c_t * l_t with a per-token weight c_t.

Because the loss is a scalar, each chunk of rows computes its logits, log-sum-exp, loss terms and d loss / d logits in
the forward and turns them straight into grad_hidden and grad_weight (accumulated); backward only scales those by
grad_output. No logits are recomputed and nothing (tokens, V)-sized ever exists. Only completion tokens are computed:
the others carry neither loss nor gradient.
impl: "reference" (full logits, autograd), "torch" (chunked, the CPU path: d loss / d logits stays factored as
g * (onehot - softmax), so one (chunk, V) buffer suffices, see chunk_grads_torch), "triton" (CUDA: Triton kernels for the
logits tile and for the softmax / loss / d loss / d logits pass over vocab tiles; the two gradient matmuls stay in torch,
as in Liger-Kernel's fused linear cross-entropy).
"""
import torch
import triton
import triton.language as tl

from kernels.logprob import INTERPRET, check_head_inputs, chunk_logits, chunk_rows, logits_tile, logprobs_reference, \
    fma_operands, resolve_impl, tiles

NORMS = ("token", "sequence", "dr_grpo")
# vocab rows of grad_weight updated per low-precision product on the Triton path: a whole (V, H) bfloat16 product per
# chunk is a 467 MB temporary at Qwen2.5-1.5B's head, by reading ~30% of the fused loss's peak extra memory (next to
# the 933 MB float32 accumulator); 16384 rows: 50 MB
GRAD_WEIGHT_ROWS = 16384


def check_loss_inputs(hidden, weight, targets, mask, advantages, old_logp, ref_logp, eps_low, eps_high, beta,
                      temperature, norm, denom):
    """Errors that name the argument at fault."""
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be (B, T, H), got shape {tuple(hidden.shape)}")
    B, T, H = hidden.shape
    for name, x in (("targets", targets), ("mask", mask), ("old_logp", old_logp), ("ref_logp", ref_logp)):
        if x is not None and x.shape != (B, T):
            raise ValueError(f"{name} must be (B, T) = ({B}, {T}) like hidden, got shape {tuple(x.shape)}")
    if advantages.shape != (B,):
        raise ValueError(f"advantages must be (B,) = ({B},), one per sequence, got shape {tuple(advantages.shape)}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if beta < 0 or eps_low < 0 or eps_high < 0:
        raise ValueError(f"beta, eps_low, eps_high must be >= 0, got {beta}, {eps_low}, {eps_high}")
    if beta > 0 and ref_logp is None:
        raise ValueError(f"beta={beta} > 0 needs ref_logp (the reference model's log-probs) for the KL term")
    if denom is not None and not denom > 0:
        raise ValueError(f"denom must be > 0, got {denom}")
    check_head_inputs(hidden.reshape(B * T, H), weight, targets.reshape(B * T), temperature)


def token_weights(mask, norm, denom=None):
    """(B, T) float32 c with loss = sum(c * l). token: mask / denom (default: the number of completion tokens);
    sequence: mask / (|o_i| * denom) (default denom: B), Eq. 1's per-sequence mean; dr_grpo: mask / denom (default:
    B * T, the formula when the (B, T) tensors hold completions padded to the budget; a caller whose rows also hold
    prompts passes rows * max_new_tokens). denom lets gradient accumulation over micro-batches divide by a global
    count instead of each micro-batch's own."""
    m = mask.float()  # (B, T)
    if norm == "token":
        return m / (m.sum().clamp(min=1) if denom is None else denom)
    if norm == "dr_grpo":  # a constant: no sequence's tokens weigh more for being few (no length bias)
        return m / (m.numel() if denom is None else denom)
    lengths = m.sum(1, keepdim=True).clamp(min=1)  # (B, 1) |o_i|
    return m / lengths / (m.shape[0] if denom is None else denom)


def stats_from(m, logp, entropy, clipped, kl):
    """Masked means over completion tokens (0-d float32 tensors, detached)."""
    n = m.sum().clamp(min=1)
    mean = lambda x: ((x.detach().float() * m).sum() / n)
    return dict(clip_frac=mean(clipped), kl_mean=mean(kl), entropy_mean=mean(entropy), logp_mean=mean(logp))

# -----------------------------------------------------------------------------
# the reference: full logits and autograd


def policy_loss_reference(hidden, weight, targets, mask, advantages, old_logp=None, ref_logp=None, eps_low=0.2,
                          eps_high=0.2, beta=0.0, temperature=1.0, norm="token", denom=None, upcast=True):
    """upcast: in float32 (float64 inputs stay float64); upcast=False: every op in the inputs' dtype."""
    B, T, H = hidden.shape
    logp, entropy = logprobs_reference(hidden.reshape(B * T, H), weight, targets.reshape(B * T), temperature, upcast)
    logp, entropy = logp.view(B, T), entropy.view(B, T)  # (B, T)
    dtype = logp.dtype
    old = logp.detach() if old_logp is None else old_logp.detach().to(dtype)
    ratio = torch.exp(logp - old)  # (B, T)
    A = advantages.detach().to(dtype)[:, None]  # (B, 1)
    obj = ratio * A
    obj_clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * A
    l = -torch.minimum(obj, obj_clipped)  # (B, T)
    kl = torch.zeros_like(l)
    if ref_logp is not None:
        d = ref_logp.detach().to(dtype) - logp
        kl = torch.exp(d) - d - 1  # k3 estimator of KL(pi || pi_ref)
        l = l + beta * kl
    m = mask.to(dtype)
    if norm == "token":  # sum over all completion tokens / their number (or the caller's denom)
        loss = (l * m).sum() / (m.sum().clamp(min=1) if denom is None else denom)
    elif norm == "dr_grpo":  # sum over all completion tokens / (rows x budget), a constant
        loss = (l * m).sum() / (B * T if denom is None else denom)
    else:  # mean over sequences (or / the caller's denom) of each sequence's token mean
        loss = ((l * m).sum(1) / m.sum(1).clamp(min=1)).sum() / (B if denom is None else denom)
    return loss, stats_from(m, logp, entropy, obj_clipped < obj, kl)

# -----------------------------------------------------------------------------
# the chunked PyTorch path


def token_objective(logp, adv, old_logp, ref_logp, eps_low, eps_high, beta):
    """Per token: l, dl/dlogp, whether the clipped branch is the min (then no gradient), KL_k3. All (C,) float32."""
    ratio = torch.exp(logp - (logp if old_logp is None else old_logp))  # (C,)
    obj = ratio * adv
    obj_clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv
    clipped = obj_clipped < obj
    loss = -torch.minimum(obj, obj_clipped)
    dlogp = torch.where(clipped, 0.0, -obj)  # d(-p A)/dlogp = -p A on the unclipped branch
    kl = torch.zeros_like(logp)
    if ref_logp is not None:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1
        loss = loss + beta * kl
        dlogp = dlogp + beta * (1 - torch.exp(d))  # dKL_k3/dlogp = 1 - exp(ref - logp)
    return loss, dlogp, clipped.float(), kl


def chunk_grads_torch(h, w, targets, coef, adv, old_logp, ref_logp, stats, eps_low, eps_high, beta, temperature,
                      grad_weight=None, storage=None):
    """One row chunk on the CPU: h (C, H), w (V, H) float32 -> grad_hidden (C, H), accumulates grad_weight (V, H) and
    writes per-token loss, logp, entropy, clipped, kl into stats (5, C). With g = d loss / d logp per row and
    d logp / d z_v = onehot_v - p_v, the gradient of the logits factors, so only one (C, V) buffer exists:
        grad_h = g / T * (w_target - E_p[w_v]),   grad_w = scatter(targets, g h / T) - p^T (g h / T)
    and E_p[w_v] = p @ w is the same GEMM that dlogits @ w would be; it also gives the entropy: E_p[z] = h / T . E_p[w_v].
    The grad_weight update is an in-place addmm_, no (V, H) temporary."""
    z = chunk_logits(h, w, temperature, storage)  # (C, V)
    m = z.amax(dim=-1, keepdim=True)  # (C, 1)
    z_target = z.gather(1, targets[:, None])[:, 0]  # (C,)
    e = z.sub_(m).exp_()  # (C, V) exp(z - m), in place: the logits are spent
    s = e.sum(dim=-1, keepdim=True)  # (C, 1); the softmax is p = e / s
    pw = (e @ w) / s  # (C, H) E_p[w_v]
    lse = (m + s.log())[:, 0]  # (C,)
    logp = z_target - lse
    hs = h / temperature  # (C, H)
    entropy = lse - (hs * pw).sum(dim=-1)  # (C,) H = lse - E_p[z]
    loss, dlogp, clipped, kl = token_objective(logp, adv, old_logp, ref_logp, eps_low, eps_high, beta)
    stats.copy_(torch.stack([loss, logp, entropy, clipped, kl]))
    g = (coef * dlogp)[:, None]  # (C, 1) d loss / d logp
    if grad_weight is not None:
        ghs = g * hs  # (C, H)
        grad_weight.index_add_(0, targets, ghs)  # the onehot part
        grad_weight.addmm_(e.T, ghs / s, alpha=-1)  # (V, H) -= p^T @ (g h / T)
    return g / temperature * (w[targets] - pw)  # (C, H)

# -----------------------------------------------------------------------------
# Triton


@triton.jit
def _logits_kernel(h_ptr, w_ptr, z_ptr, N, V, H, stride_h, stride_w, stride_z, inv_temp,
                   BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr, UPCAST: tl.constexpr):
    """z = (h @ w^T) / temperature in float32, one (BLOCK_N, BLOCK_V) tile per program."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
    z = logits_tile(h_ptr, w_ptr, rows, cols, N, V, H, stride_h, stride_w, inv_temp, BLOCK_N, BLOCK_V, BLOCK_H, UPCAST)
    tl.store(z_ptr + rows[:, None] * stride_z + cols[None, :], z, mask=(rows[:, None] < N) & (cols[None, :] < V))


@triton.jit
def _policy_loss_rows_kernel(z_ptr, stride_z, targets_ptr, coef_ptr, adv_ptr, old_ptr, ref_ptr, stats_ptr, stride_s,
                             V, inv_temp, eps_low, eps_high, beta,
                             HAS_OLD: tl.constexpr, HAS_REF: tl.constexpr, BLOCK_V: tl.constexpr):
    """One row of temperature-scaled logits per program. Pass 1 over vocab tiles: online log-sum-exp, sum p*z (for the
    entropy) and the target's logit. Then the token's objective. Pass 2: overwrite the row with d loss / d raw logits."""
    row = tl.program_id(0).to(tl.int64)
    z_row = z_ptr + row * stride_z
    target = tl.load(targets_ptr + row).to(tl.int64)
    m = float("-inf")
    s = 0.0
    sz = 0.0
    zt = 0.0
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        ok = cols < V
        z = tl.load(z_row + cols, mask=ok, other=0.0)  # (BLOCK_V,)
        m_new = tl.maximum(m, tl.max(tl.where(ok, z, float("-inf")), axis=0))
        rescale = tl.exp(m - m_new)
        e = tl.where(ok, tl.exp(z - m_new), 0.0)
        s = s * rescale + tl.sum(e, axis=0)
        sz = sz * rescale + tl.sum(e * z, axis=0)
        zt += tl.sum(tl.where(cols == target, z, 0.0), axis=0)
        m = m_new
    lse = m + tl.log(s)
    logp = zt - lse
    entropy = lse - sz / s  # H = lse - E_p[z]
    # the token's objective (same math as token_objective)
    adv = tl.load(adv_ptr + row)
    if HAS_OLD:
        old = tl.load(old_ptr + row)
    else:
        old = logp  # old == new, detached: ratio 1
    ratio = tl.exp(logp - old)
    obj = ratio * adv
    obj_clipped = tl.minimum(tl.maximum(ratio, 1.0 - eps_low), 1.0 + eps_high) * adv
    clipped = obj_clipped < obj
    loss = -tl.minimum(obj, obj_clipped)
    dlogp = tl.where(clipped, 0.0, -obj)
    kl = 0.0
    if HAS_REF:
        d = tl.load(ref_ptr + row) - logp
        kl = tl.exp(d) - d - 1.0
        loss += beta * kl
        dlogp += beta * (1.0 - tl.exp(d))
    tl.store(stats_ptr + row, loss)
    tl.store(stats_ptr + stride_s + row, logp)
    tl.store(stats_ptr + 2 * stride_s + row, entropy)
    tl.store(stats_ptr + 3 * stride_s + row, tl.where(clipped, 1.0, 0.0))
    tl.store(stats_ptr + 4 * stride_s + row, kl)
    g = tl.load(coef_ptr + row) * dlogp * inv_temp
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        ok = cols < V
        z = tl.load(z_row + cols, mask=ok, other=0.0)
        dz = g * (tl.where(cols == target, 1.0, 0.0) - tl.exp(z - lse))
        tl.store(z_row + cols, dz, mask=ok)


def chunk_dlogits_triton(h, w, targets, coef, adv, old_logp, ref_logp, stats, eps_low, eps_high, beta, temperature,
                         block_n=None, block_v=None, block_h=None):
    """One row chunk on Triton kernels: h (C, H), w (V, H) in their own dtypes -> d loss / d (h @ w^T) (C, V) float32;
    writes per-token loss, logp, entropy, clipped, kl into stats (5, C)."""
    C, H = h.shape
    V = w.shape[0]
    fma = fma_operands(h, w)
    t = tiles("logits", fma, block_n, block_v, block_h)
    z = torch.empty(C, V, dtype=torch.float32, device=h.device)  # (C, V)
    _logits_kernel[(triton.cdiv(C, t.BLOCK_N), triton.cdiv(V, t.BLOCK_V))](
        h, w, z, C, V, H, h.stride(0), w.stride(0), z.stride(0), 1.0 / temperature, UPCAST=INTERPRET or fma,
        **t._asdict())
    ROW_BLOCK_V = 8192 if INTERPRET else 4096
    _policy_loss_rows_kernel[(C,)](
        z, z.stride(0), targets, coef, adv, coef if old_logp is None else old_logp,
        coef if ref_logp is None else ref_logp, stats, stats.stride(0), V, 1.0 / temperature, eps_low, eps_high, beta,
        HAS_OLD=old_logp is not None, HAS_REF=ref_logp is not None, BLOCK_V=ROW_BLOCK_V)
    return z  # now d loss / d (h @ w^T)

# -----------------------------------------------------------------------------
# the chunk loop and the autograd op


def fused_forward(hidden, weight, targets, coef, adv, old_logp, ref_logp, eps_low, eps_high, beta, temperature,
                  use_triton, chunk_size=None, need_grad_hidden=True, need_grad_weight=True):
    """hidden (M, H) -> loss (0-d), per-token stats (5, M) [loss, logp, entropy, clipped, kl], grad_hidden (M, H),
    grad_weight (V, H), the gradients of the loss; rows are processed in chunks, so no (M, V) tensor exists."""
    M, H = hidden.shape
    V = weight.shape[0]
    w = weight if use_triton else weight.float()  # (V, H): float32 GEMM operands on the CPU path (no copy if float32)
    grad_hidden = torch.empty_like(hidden) if need_grad_hidden else None
    grad_weight = torch.zeros(V, H, dtype=torch.float32, device=weight.device) if need_grad_weight else None
    stats = torch.empty(5, M, dtype=torch.float32, device=hidden.device)
    C = min(chunk_rows(V, chunk_size), max(M, 1))
    storage = None if use_triton else torch.empty(V * C, device=hidden.device)  # logits buffer reused by every chunk
    for i in range(0, M, C):
        j = min(i + C, M)
        h = hidden[i:j]  # (C, H)
        old = None if old_logp is None else old_logp[i:j]
        ref = None if ref_logp is None else ref_logp[i:j]
        args = (targets[i:j], coef[i:j], adv[i:j], old, ref, stats[:, i:j], eps_low, eps_high, beta, temperature)
        if not use_triton:
            gh = chunk_grads_torch(h.float(), w, *args, grad_weight=grad_weight, storage=storage)  # (C, H)
        else:
            dz = chunk_dlogits_triton(h, w, *args)  # (C, V) float32 d loss / d logits
            dz, h = dz.to(w.dtype), h.to(w.dtype)  # matmul operands in the weight's dtype
            gh = dz @ w  # (C, H)
            if grad_weight is not None and w.dtype == torch.float32:
                grad_weight.addmm_(dz.T, h)  # (V, H) += (V, C) @ (C, H)
            elif grad_weight is not None:  # low-precision chunk products, float32 accumulation across chunks,
                for v in range(0, V, GRAD_WEIGHT_ROWS):  # a vocab slice at a time: no (V, H) temporary
                    grad_weight[v:v + GRAD_WEIGHT_ROWS] += dz[:, v:v + GRAD_WEIGHT_ROWS].T @ h  # (<=S, H)
        if grad_hidden is not None:
            grad_hidden[i:j] = gh
    loss = (stats[0] * coef).sum()
    if grad_weight is not None:
        grad_weight = grad_weight.to(weight.dtype)
    return loss, stats, grad_hidden, grad_weight


class FusedPolicyLoss(torch.autograd.Function):
    """Forward computes the loss and its gradients; backward scales them by grad_output (once: no retain_graph)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, coef, adv, old_logp, ref_logp, eps_low, eps_high, beta, temperature,
                use_triton, chunk_size):
        loss, stats, grad_hidden, grad_weight = fused_forward(
            hidden, weight, targets, coef, adv, old_logp, ref_logp, eps_low, eps_high, beta, temperature, use_triton,
            chunk_size, need_grad_hidden=ctx.needs_input_grad[0], need_grad_weight=ctx.needs_input_grad[1])
        ctx.grads = (grad_hidden, grad_weight)
        ctx.mark_non_differentiable(stats)
        return loss, stats

    @staticmethod
    def backward(ctx, grad_loss, grad_stats):
        if ctx.grads is None:
            raise RuntimeError("policy_loss: the fused loss stores its gradients for a single backward pass "
                               "(retain_graph / a second backward is not supported; use impl='reference')")
        grad_hidden, grad_weight = ctx.grads
        ctx.grads = None  # hand the buffers to autograd rather than keep a second reference
        for g in (grad_hidden, grad_weight):
            if g is not None:
                g.mul_(grad_loss)  # in place: no second (V, H) buffer
        return grad_hidden, grad_weight, *([None] * 11)

# -----------------------------------------------------------------------------
# the entry point


def policy_loss(hidden, weight, targets, mask, advantages, old_logp=None, ref_logp=None, eps_low=0.2, eps_high=0.2,
                beta=0.0, temperature=1.0, norm="token", denom=None, impl="auto", chunk_size=None):
    """hidden (B, T, H) final hidden states, weight (V, H) lm_head (may be the tied embedding), targets (B, T) the
    sampled tokens, mask (B, T) 0/1 completion mask, advantages (B,), old_logp / ref_logp (B, T) or None (old None:
    old == new detached, ratio 1, the released code's single update). Returns (loss, stats) where the loss is a 0-d
    float32 tensor with autograd to hidden and weight, and stats holds 0-d tensors clip_frac, kl_mean, entropy_mean,
    logp_mean (masked means). impl: 'auto' | 'triton' | 'torch' | 'reference'."""
    check_loss_inputs(hidden, weight, targets, mask, advantages, old_logp, ref_logp, eps_low, eps_high, beta,
                      temperature, norm, denom)
    impl = resolve_impl(impl, hidden.device)
    if impl == "reference":
        return policy_loss_reference(hidden, weight, targets, mask, advantages, old_logp, ref_logp, eps_low, eps_high,
                                     beta, temperature, norm, denom)
    B, T, H = hidden.shape
    rows = mask.reshape(B * T).nonzero()[:, 0]  # (M,) completion tokens: the only ones with a loss or a gradient
    pick = lambda x: None if x is None else x.detach().reshape(B * T)[rows]  # (B, T) -> (M,)
    adv = advantages.detach().float()[:, None].expand(B, T)  # (B, T)
    f32 = lambda x: None if x is None else x.float()
    loss, stats = FusedPolicyLoss.apply(
        hidden.reshape(B * T, H)[rows], weight, pick(targets).long(), pick(token_weights(mask, norm, denom)),
        pick(adv), f32(pick(old_logp)), f32(pick(ref_logp)), eps_low, eps_high, beta, temperature,
        impl == "triton", chunk_size)
    _, logp, entropy, clipped, kl = stats  # (M,) each
    return loss, stats_from(pick(mask).float(), logp, entropy, clipped, kl)
