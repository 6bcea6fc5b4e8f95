"""
Rollouts for group-based RL: G sampled completions for every prompt, decoded together with a KV cache.
Reads top to bottom: input checks -> one sampling step (temperature, top-k, top-p) -> the decode plan -> the memory
plan (one GPU's memory split between the resident state, the KV cache and the largest transient) -> the engine that
keeps the KV cache and CUDA graphs for the whole run -> sample_groups.

Each distinct prompt is prefilled once, straight into the first of its G cache rows (right-padded batches of at most
plan.prefill_tokens tokens: a short prompt's padding slots are overwritten by its own completion before anything
attends to them), copied to the other G-1 rows in place, and then all P*G rows decode one token per step. The decode
step has static shapes: the batch and the attended span only change at a few points (compaction, span buckets), so
on CUDA each shape is captured once as a CUDA graph and replayed by every later call of the run, instead of
launching ~40 kernels per layer from Python every token. Finished rows stay in the batch, masked, until the live
fraction falls to `compact_below`; then the live rows move to the front of the same cache, in place. Whether all
rows finished is asked every `check_every` tokens, the only host syncs of the loop.
"""
import math
import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F

from configurator import UsageError

# -----------------------------------------------------------------------------
# input checks


def check_inputs(model, prompts, G, max_new_tokens, temperature, top_k, top_p, stop_ids):
    """Clear errors for bad arguments; returns the prompts as lists of ints."""
    vocab, context = model.config.vocab_size, model.config.max_position_embeddings
    if not isinstance(G, int) or G < 1:
        raise ValueError(f"G must be an integer >= 1, got {G!r}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 turns it off), got {top_k!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: give at least one prompt (a list of token ids)")
    out = []
    for i, p in enumerate(prompts):
        p = [int(t) for t in p]
        if not p:
            raise ValueError(f"prompts[{i}] is empty: a prompt needs at least one token")
        if len(p) >= context:
            raise ValueError(f"prompts[{i}] has {len(p)} tokens, which leaves no room for a completion within the "
                             f"model's context (max_position_embeddings={context})")
        if min(p) < 0 or max(p) >= vocab:
            raise ValueError(f"prompts[{i}] holds token id {min(p) if min(p) < 0 else max(p)}, outside the "
                             f"vocabulary [0, {vocab})")
        out.append(p)
    bad = [s for s in stop_ids if not 0 <= s < vocab]
    if bad:
        raise ValueError(f"stop_ids {bad} are outside the vocabulary [0, {vocab})")
    return out

# -----------------------------------------------------------------------------
# one sampling step


def sample_next(logits, u, temperature, top_k, top_p):
    """logits (B, V) float32, u (B,) uniform in [0, 1) -> next token (B,) and its log-prob (B,) under the sampling
    distribution: softmax(logits / temperature) restricted to the top_k tokens, then to the smallest set of them
    holding top_p of the mass, renormalised. temperature 0 is greedy (argmax); its log-prob is then under the plain
    softmax(logits), temperature 1 and no filtering. The token is drawn by inverting the CDF at u, so a row's sample
    depends only on its logits and its own u, not on which other rows share the batch."""
    if temperature == 0:
        token = logits.argmax(-1)  # (B,)
        return token, F.log_softmax(logits, -1).gather(1, token[:, None])[:, 0]
    ids = None  # vocabulary ids of the candidate columns when the candidates are a sorted subset
    if top_k:  # dividing by temperature keeps the order, so select first and divide only K columns
        logits, ids = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1)  # (B, K), sorted descending
    if temperature != 1:
        logits = logits / temperature
    if top_p < 1:
        if ids is None:
            logits, ids = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = F.softmax(logits, -1)  # drop a token once the tokens ranked above it hold top_p of the mass:
        logits = logits.masked_fill(probs.cumsum(-1) - probs >= top_p, float("-inf"))  # the first always stays
    logprobs = F.log_softmax(logits, -1)  # (B, K)
    cdf = logprobs.exp().cumsum(-1)  # (B, K)
    choice = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).clamp_(max=cdf.shape[-1] - 1)  # (B, 1)
    token = choice[:, 0] if ids is None else ids.gather(1, choice)[:, 0]
    return token, logprobs.gather(1, choice)[:, 0]

# -----------------------------------------------------------------------------
# the decode plan and the memory a row needs


class DecodePlan(NamedTuple):
    """How the decode loop runs on a device (the same loop everywhere; the plan only sets its granularity)."""
    cuda_graphs: bool    # capture the step once per (batch, span) shape and replay it
    span_bucket: int     # the attended span rounded up to a multiple of this (a fixed shape); 0: the exact span
                         # (one host sync per step, free on a CPU)
    check_every: int     # tokens between the host's "have all rows finished?" checks (and compactions)
    row_multiple: int    # a compacted batch keeps a multiple of this many rows (fewer shapes to capture)
    prefill_tokens: int  # prompt tokens one prefill forward feeds at most (0: every prompt of a call in one)


CPU_PLAN = DecodePlan(cuda_graphs=False, span_bucket=0, check_every=1, row_multiple=1, prefill_tokens=0)
CUDA_PLAN = DecodePlan(cuda_graphs=True, span_bucket=256, check_every=16, row_multiple=8, prefill_tokens=8192)


def plan_for(device):
    return CUDA_PLAN if torch.device(device).type == "cuda" else CPU_PLAN


def kv_bytes_per_token(config, dtype):
    """Bytes of keys and values one row holds per cache slot: layers x 2 x kv heads x head_dim x element size."""
    return 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * dtype.itemsize


def row_bytes(config, dtype, cache_len):
    """Device memory one sampled row needs: its KV cache slots, plus the decode step's per-row working set (the
    float32 logits and the sampler's softmax, cumsum and sort over them: 4 x V x 4 bytes, a bound)."""
    return kv_bytes_per_token(config, dtype) * cache_len + 16 * config.vocab_size


def rows_that_fit(config, dtype, cache_len, free_bytes, G):
    """How many rows one sample_groups call may decode at once in `free_bytes` of device memory: whole groups of G
    rows. Raises ValueError (naming what it takes) when not even one group fits."""
    per_row = row_bytes(config, dtype, cache_len)
    rows = int(free_bytes // per_row) // G * G
    if rows < G:
        raise ValueError(f"one group of {G} rows x {cache_len} cache slots needs {G * per_row / 2**30:.1f} GiB "
                         f"({per_row / 2**20:.0f} MiB a row) and {free_bytes / 2**30:.1f} GiB are free: lower "
                         f"max_new_tokens or group_size, or free memory")
    return rows

# -----------------------------------------------------------------------------
# the memory plan: one GPU's memory split between the resident state, the engine's KV cache (held for the whole run)
# and the largest transient of the three phases that run beside it: a prefill forward, a decode step, the update

CUDA_CONTEXT = 0.5e9  # bytes outside torch's allocator: the CUDA context, cuBLAS workspaces (an estimate)
PLAN_FRACTION = 0.95  # of what the resident state leaves, the share the plan hands out (the rest: fragmentation)


def prefill_bytes(config, dtype, tokens, span=0):
    """Activations one prefill forward of `tokens` prompt tokens holds at once (a bound, op by op as the CPU runs it:
    tests/test_memory.py measures it there): per token the residual stream, its norm, q/k/v and the attention output
    (6 x hidden) and the MLP's gate, up, activation and product (4 x intermediate) in dtype; and, with span > 0, for
    a slice that attends to `span` slots before it, its masked softmax over them, op by op (heads x span, two
    copies in dtype and two in float32) and its mask."""
    c, size = config, dtype.itemsize
    return tokens * ((6 * c.hidden_size + 4 * c.intermediate_size) * size
                     + (c.num_attention_heads * (8 + 2 * size) + 2 * size) * span)


def update_bytes(config, dtype, n_params, tokens, masters):
    """The update's peak above the resident state (a bound): float32 gradients (4 bytes a parameter; with master
    weights also the largest parameter's gradient in dtype, while ghpo.accumulate_fp32 adds it in) and what a
    micro-batch of `tokens` tokens saves for the backward: per layer and token the norms' inputs and outputs, q/k/v,
    the attention output and the MLP's gate, up and product in dtype, plus two layers' worth for the backward's own
    working set (the fused loss keeps no logits). tests/test_memory.py checks it against the peak
    measured on the CPU and against bench/memory.py's H200 peak."""
    c, size = config, dtype.itemsize
    saved = (6 * c.hidden_size + 3 * c.intermediate_size + 2 * c.num_key_value_heads * c.head_dim) * size
    largest = c.vocab_size * c.hidden_size * size if masters else 0
    return 4 * n_params + largest + tokens * saved * (c.num_hidden_layers + 2)


class MemoryPlan(NamedTuple):
    """One GPU's memory for a run, in bytes (memory_plan): the engine's KV cache is allocated once, at rows x
    cache_len, and each phase's peak is resident + kv + its transient."""
    total: int           # the card
    resident: int        # weights, float32 master weights, AdamW moments, and the CUDA context
    rows: int            # rows the KV cache holds: whole groups of G, the rows one sampling call decodes at once
    cache_len: int       # slots a row holds: the longest prompt the run can show + max_new_tokens (the context)
    prefill_tokens: int  # prompt tokens one prefill forward feeds
    kv: int              # the KV cache
    prefill: int         # one prefill forward's activations
    decode: int          # the decode step's working set at `rows` rows (logits, softmax, sort)
    update: int          # the update's transient (update_bytes)

    def peaks(self):
        """{phase: peak bytes} for the evaluation and the rollout (prefill or decode) and the update."""
        sampling = self.resident + self.kv + max(self.prefill, self.decode)
        return {"evaluation": sampling, "rollout": sampling, "update": self.resident + self.kv + self.update}

    def describe(self, name=""):
        """The plan in one line."""
        gib = lambda n: f"{n / 2**30:.1f} GiB"
        p = self.peaks()
        return (f"memory plan{f' for the {name}' if name else ''} ({gib(self.total)}): resident {gib(self.resident)}; "
                f"KV cache {self.rows} rows x {self.cache_len} slots {gib(self.kv)}, kept for the run; prefill "
                f"{self.prefill_tokens} tokens a forward {gib(self.prefill)}; decode {gib(self.decode)}; update "
                f"{gib(self.update)}; peaks: sampling {gib(p['rollout'])}, update {gib(p['update'])}; headroom "
                f"{gib(self.total - max(p.values()))}")


def memory_plan(config, dtype, total, resident, cache_len, G, update_tokens, n_params, masters,
                prefill_tokens=CUDA_PLAN.prefill_tokens):
    """The plan for a card of `total` bytes holding `resident` bytes (the CUDA context not included): as many KV
    cache rows, in whole groups of G, as PLAN_FRACTION of the rest holds beside the largest of the prefill's, the
    decode step's and the update's transients. Raises ValueError, naming each part, when not one group fits."""
    resident += int(CUDA_CONTEXT)
    free = PLAN_FRACTION * (total - resident)
    kv_row = kv_bytes_per_token(config, dtype) * cache_len
    prefill = prefill_bytes(config, dtype, prefill_tokens, cache_len if cache_len > prefill_tokens else 0)
    update = update_bytes(config, dtype, n_params, update_tokens, masters) if update_tokens else 0
    per_row = row_bytes(config, dtype, cache_len)  # the KV row and its share of the decode step's working set
    rows = int(max(0, min((free - max(prefill, update)) // kv_row, (free - prefill) // per_row))) // G * G
    plan = MemoryPlan(int(total), int(resident), rows, cache_len, prefill_tokens, rows * kv_row, prefill,
                      rows * (per_row - kv_row), update)
    if rows < G:
        gib = lambda n: f"{n / 2**30:.1f} GiB"
        raise ValueError(f"one group of {G} rows x {cache_len} cache slots ({gib(G * kv_row)}) does not fit beside "
                         f"{gib(resident)} resident and the update's {gib(update)} ({update_tokens} tokens a "
                         f"micro-batch) on {gib(total)}: lower micro_batch, max_new_tokens or the group size")
    return plan


def check_memory(model, optimizer, masters, dtype, prompt_len, max_new_tokens, G, update_rows, update_len, fsdp,
                 rollout_rows, rank=0):
    """A run's memory plan on CUDA, before its first evaluation (memory_plan): the resident state is what is allocated
    plus, with an optimizer, AdamW's two float32 moments, which its first step allocates (masters: float32 master
    weights beside the model's); a KV cache row holds the longest prompt the run can show + max_new_tokens; G is its
    largest group and the update's micro-batch is update_rows rows of update_len + max_new_tokens tokens. The model's
    engine is allocated at the plan's size for the whole run (under FSDP2 each sampling copy makes its own, and the
    gathered copy, whole weights in dtype, is counted as resident: it exists while a rollout or evaluation runs, so
    the update's peak is over-counted by it). A run that cannot fit stops here with one line (UsageError); one that
    fits prints its plan (rank 0) and gets it back."""
    local = lambda p: p.to_local() if hasattr(p, "to_local") else p  # an FSDP2 shard's own elements
    moments = 8 * sum(local(p).numel() for group in optimizer.param_groups for p in group["params"]) if optimizer else 0
    # under FSDP2, ghpo.sampling_model's plain copy of the gathered weights (a DTensor's numel is the whole tensor's)
    gathered = sum(p.numel() for p in model.parameters()) * dtype.itemsize if fsdp else 0
    context = model.config.max_position_embeddings
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    try:
        plan = memory_plan(model.config, dtype, props.total_memory, torch.cuda.memory_allocated() + moments + gathered,
                           min(prompt_len + max_new_tokens, context), G,
                           update_rows * min(update_len + max_new_tokens, context),
                           sum(local(p).numel() for p in model.parameters()), masters)
    except ValueError as e:
        raise UsageError(f"memory: {e}; or shard the model over GPUs (fsdp=True)") from None
    if not fsdp:
        engine(model, plan.rows, plan.cache_len)
    if rank == 0:
        print(plan.describe(props.name) + f" (a rollout has {rollout_rows} rows)")
    return plan


def sampling_rows(model, prompts, G, max_new_tokens, dtype, cuda, rows=0, cpu_rows=0):
    """Rows one sample_groups call may decode at once (whole groups of G): `rows` if set (sample_rows); else on CUDA
    the rows of the model's engine when check_memory reserved it (the memory plan), or as many as 0.9 of the free
    memory holds, each row needing its KV cache for the longest prompt + max_new_tokens (row_bytes); else cpu_rows
    (0: all)."""
    if rows or not cuda:
        return rows or cpu_rows
    cache_len = min(max(map(len, prompts)) + max_new_tokens, model.config.max_position_embeddings)
    planned = ENGINES.get(model)
    if planned is not None and planned.cache_len >= cache_len and planned.rows >= G:
        return planned.rows // G * G
    free = torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    try:
        return rows_that_fit(model.config, dtype, cache_len, 0.9 * free, G)
    except ValueError as e:
        raise UsageError(f"out of memory for sampling: {e}") from None


# -----------------------------------------------------------------------------
# the sampler


class Rows(NamedTuple):
    """Per-row state of the decode batch, allocated for every row (plus one scratch row) and read through views of
    its first b rows. Compaction moves the live rows to the front, in place, so CUDA graphs keep their addresses."""
    out: torch.Tensor     # (N+1,) long: the output row a batch row writes; padding rows write the scratch row N
    pos: torch.Tensor     # (N+1,) long: the cache slot of the row's next fed token
    budget: torch.Tensor  # (N+1,) long: tokens the row may generate
    alive: torch.Tensor   # (N+1,) bool: not finished
    token: torch.Tensor   # (N+1,) long: the row's last sampled token, fed by the next step


class Engine:
    """What sampling keeps for one model across calls, for the whole run: the KV cache (rows x cache_len slots), the
    decode step's per-row state and uniforms, and the CUDA graphs captured on them, one per (batch rows, span,
    sampling settings) and replayed by every later call. A graph reads the model's weights where they are, so an
    update in place keeps it valid; a new model object (FSDP2's gathered copy) gets an engine of its own."""

    def __init__(self, model, rows, cache_len, captures=0):
        self.k, self.v = model.new_kv_cache(rows, cache_len)  # (L, rows, Hkv, cache_len, D) each
        new = lambda dtype: torch.zeros(rows + 1, dtype=dtype, device=self.k.device)  # (rows+1,): a scratch row
        self.state = Rows(out=new(torch.long), pos=new(torch.long), budget=new(torch.long), alive=new(torch.bool),
                          token=new(torch.long))
        self.uniforms = new(torch.float32)  # one per output row and step, drawn outside the graph
        self.rows, self.cache_len = rows, cache_len
        self.graphs, self.pool = {}, None  # (b, span, temperature, top_k, top_p) -> (graph, its outputs)
        self.captures = captures  # CUDA graphs captured over the engine's life (kept when it grows)


ENGINES = weakref.WeakKeyDictionary()  # model -> its Engine, dropped with the model


def engine(model, rows=0, cache_len=0):
    """The model's engine, made or grown to hold at least rows x cache_len slots: a bigger cache is a new allocation
    (the old one freed first), which drops the graphs captured on the old. A run that reserves its planned size
    before its first call (check_memory) never grows it."""
    e = ENGINES.get(model)
    if e is None or e.rows < rows or e.cache_len < cache_len:
        size = (max(rows, e.rows if e else 0), max(cache_len, e.cache_len if e else 0))
        captures = e.captures if e else 0
        ENGINES.pop(model, None)
        del e
        ENGINES[model] = Engine(model, *size, captures=captures)
    return ENGINES[model]


def cuda_graph(step, pool):
    """Capture step() as a CUDA graph; returns (graph, its output tensors). Every capture is preceded by one run on a
    side stream, as CUDA graph capture asks: lazy initialisations, and any compilation of the fused pieces that a new
    shape brings (a torch.compile guard can fail on a new batch size, e.g. one that no longer equals head_dim), happen
    there and not inside the capture. The extra run changes nothing: step() writes only the cache slot its own inputs
    decide, and computes the same outputs when run twice."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = step()
    return graph, out


@torch.no_grad()
def sample_groups(model, prompts, G, max_new_tokens, temperature=1.0, top_k=0, top_p=1.0, stop_ids=(), seed=0,
                  generator=None, pad_id=0, compact_below=0.75, max_rows=0, plan=None):
    """Sample G completions for every prompt (a list of token-id lists of any lengths). Returns one dict of batched
    tensors on the model's device, rows prompt-major (prompt 0's G rows, then prompt 1's, ...), N = len(prompts) * G:
      tokens        (N, T) long: the completions, pad_id (any int) after each row's end; T = the longest completion
                    (<= max_new_tokens, since decoding stops once every row has finished)
      mask          (N, T) bool: True up to and including the first stop token (or every token of a row cut by length)
      logprobs      (N, T) float32: log-prob of each token under the sampling distribution (see sample_next), 0 off mask
      lengths       (N,) long: completion lengths (mask.sum(1))
      finish_reason list of N strings: "stop" (ended on a stop id) or "length" (max_new_tokens or the context limit)
      prompt_index  (N,) long: which prompt each row belongs to
    A completion never runs past the model's context: prompt + completion <= max_position_embeddings.
    Randomness comes from `generator` (a torch.Generator on the model's device) or one seeded with `seed`: each
    step draws one uniform per output row, and a row's token is a function of its own logits and its own uniform.
    compact_below: move the live rows to the front of the batch when the live fraction falls to or below it.
    max_rows: decode at most this many rows at once (whole groups; 0: all), the rest in later batches.
    plan: a DecodePlan (default: plan_for(the model's device)).
    The KV cache, the decode state and the CUDA graphs live in the model's Engine (engine(model)), kept across calls."""
    prompts = check_inputs(model, prompts, G, max_new_tokens, temperature, top_k, top_p, stop_ids)
    device = model.lm_head.weight.device
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(seed)
    per_call = max(1, max_rows // G) if max_rows else len(prompts)
    context = model.config.max_position_embeddings
    e = engine(model, min(per_call, len(prompts)) * G, max(min(len(p) + max_new_tokens, context) for p in prompts))
    outs = [decode(model, e, prompts[i:i + per_call], G, max_new_tokens, temperature, top_k, top_p, stop_ids,
                   generator, pad_id, compact_below, plan or plan_for(device))
            for i in range(0, len(prompts), per_call)]
    return outs[0] if len(outs) == 1 else concat_outputs(outs, pad_id, G)


def concat_outputs(outs, pad_id, G):
    """The outputs of consecutive batches of prompts as one, padded to the longest completion."""
    T = max(o["tokens"].shape[1] for o in outs)
    pad = lambda x, v: F.pad(x, (0, T - x.shape[1]), value=v)
    return dict(tokens=torch.cat([pad(o["tokens"], pad_id) for o in outs]),
                mask=torch.cat([pad(o["mask"], False) for o in outs]),
                logprobs=torch.cat([pad(o["logprobs"], 0.0) for o in outs]),
                lengths=torch.cat([o["lengths"] for o in outs]),
                finish_reason=[r for o in outs for r in o["finish_reason"]],
                prompt_index=torch.arange(sum(len(o["lengths"]) for o in outs) // G,
                                          device=outs[0]["lengths"].device).repeat_interleave(G))


def prefill(model, prompts, G, kv, chunk_tokens):
    """Feed each prompt into the first of its G cache rows (kv: two (L, >= P*G, Hkv, S, D) caches) and return the
    float32 logits (P, V) after its last token. The prompts go right-padded to the longest, as many a forward as
    chunk_tokens allows (0: all in one), and a prompt longer than chunk_tokens alone, in slices of that many tokens
    that attend to the slots before them (vLLM's max_num_batched_tokens): one forward's activations stay within
    what the memory plan sets aside for them."""
    device = kv[0].device
    P, Lp = len(prompts), max(len(p) for p in prompts)
    lens = torch.tensor([len(p) for p in prompts], device=device)  # (P,)
    padded = torch.zeros(P, Lp, dtype=torch.long, device=device)  # (P, Lp), any id pads
    for i, p in enumerate(prompts):
        padded[i, :len(p)] = torch.tensor(p, device=device)
    n = P if not chunk_tokens else max(1, chunk_tokens // Lp)  # prompts a forward
    logits = []
    for i in range(0, P, n):
        rows = slice(i * G, min(i + n, P) * G, G)  # the first cache row of each of these prompts
        cache = (kv[0][:, rows], kv[1][:, rows])
        if n > 1 or not chunk_tokens or Lp <= chunk_tokens:
            h = model(padded[i:i + n], kv_cache=cache, return_hidden=True)  # (n, Lp, C)
            h = h[torch.arange(h.shape[0], device=device), lens[i:i + n] - 1]  # (n, C) at each prompt's last token
        else:  # one prompt longer than a chunk: slices of chunk_tokens, each attending to the slots before it
            for s in range(0, len(prompts[i]), chunk_tokens):
                part = padded[i:i + 1, s:min(s + chunk_tokens, len(prompts[i]))]  # (1, <= chunk_tokens)
                h = model(part, kv_cache=cache, pos=None if s == 0 else torch.tensor([s], device=device),
                          span=s + part.shape[1], return_hidden=True)[:, -1]  # (1, C)
        logits.append(model.lm_head(h).float())
    return torch.cat(logits)  # (P, V)


def decode(model, e, prompts, G, max_new_tokens, temperature, top_k, top_p, stop_ids, generator, pad_id,
           compact_below, plan):
    """sample_groups for one batch of prompts (checked inputs), on the engine e."""
    device = model.lm_head.weight.device
    P, N = len(prompts), len(prompts) * G
    prompt_lens = torch.tensor([len(p) for p in prompts], device=device)  # (P,)
    budget = (model.config.max_position_embeddings - prompt_lens).clamp(max=max_new_tokens)  # (P,) tokens allowed
    Lp = max(len(p) for p in prompts)
    max_len = e.cache_len  # cache slots a row has: at least the longest prompt + its completion
    k_cache, v_cache = e.k, e.v  # (L, rows, Hkv, max_len, D) each; this call uses its first N rows
    L = k_cache.shape[0]

    # prefill every distinct prompt once, into the first of its G cache rows, then copy those slots to the other G-1
    logits = prefill(model, prompts, G, (k_cache, v_cache), plan.prefill_tokens).repeat_interleave(G, 0)  # (N, V)
    for c in (k_cache, v_cache):
        groups = c[:, :N].view(L, P, G, *c.shape[2:])[:, :, :, :, :Lp]  # (L, P, G, Hkv, Lp, D)
        groups[:, :, 1:] = groups[:, :, :1]  # in place: no copy of the whole cache

    # per-row state (N+1 rows: row N is the scratch row of padding rows) and the output buffers
    b = N  # rows in the batch: rows[:b]; the live ones among them have alive set
    rows = Rows(*(x[:N + 1] for x in e.state))  # views of the engine's state: CUDA graphs keep their addresses
    rows.out.copy_(torch.arange(N + 1, device=device))
    rows.pos.copy_(F.pad(prompt_lens.repeat_interleave(G), (0, 1)))
    rows.budget.copy_(F.pad(budget.repeat_interleave(G), (0, 1)))
    rows.alive.fill_(True)
    rows.alive[N] = False
    rows.token.zero_()
    stop = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    tokens = torch.full((N + 1, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(N + 1, max_new_tokens, device=device)
    lengths = torch.zeros(N + 1, dtype=torch.long, device=device)
    uniforms = e.uniforms  # one per output row and step; the scratch row's stays 0
    uniforms[N] = 0.0

    def record(t, token, logp):
        """Write step t's samples of the batch's rows and retire the rows that ended."""
        out, alive = rows.out[:b], rows.alive[:b]
        tokens[out, t] = torch.where(alive, token, pad_id)
        logprobs[out, t] = torch.where(alive, logp, 0.0)
        ended = alive & ((token[:, None] == stop).any(1) | (rows.budget[:b] <= t + 1))  # (b,)
        lengths[out] = torch.where(ended, t + 1, lengths[out])
        alive &= ~ended
        rows.token[:b] = token

    def step(b, span):
        """Feed each row's last token at its position and sample the next: the static decode step."""
        h = model(rows.token[:b, None], kv_cache=(k_cache[:, :b], v_cache[:, :b]), pos=rows.pos[:b], span=span,
                  return_hidden=True)  # (b, 1, C)
        logits = model.lm_head(h[:, 0]).float()  # (b, V)
        return sample_next(logits, uniforms[rows.out[:b]], temperature, top_k, top_p)

    torch.rand(N, generator=generator, device=device, out=uniforms[:N])
    record(0, *sample_next(logits, uniforms[rows.out[:b]], temperature, top_k, top_p))
    del logits
    for t in range(1, max_new_tokens):
        if t % plan.check_every == 0:  # the host sync: stop when every row has finished; compact when few live
            live = int(rows.alive[:b].sum())
            if live == 0:
                break
            keep_rows = min(b, math.ceil(live / plan.row_multiple) * plan.row_multiple)
            if live <= compact_below * b and keep_rows < b:
                compact(rows, (k_cache, v_cache), b, keep_rows, N)
                b = keep_rows
        torch.rand(N, generator=generator, device=device, out=uniforms[:N])
        span = None if not plan.span_bucket else min(max_len, math.ceil((Lp + t) / plan.span_bucket)
                                                     * plan.span_bucket)  # covers every row's position
        if not plan.cuda_graphs:
            token, logp = step(b, span)
        else:
            key = (b, span, temperature, top_k, top_p)
            if key not in e.graphs:
                e.pool = e.pool or torch.cuda.graph_pool_handle()
                e.graphs[key] = cuda_graph(lambda b=b, span=span: step(b, span), e.pool)
                e.captures += 1
            graph, (token, logp) = e.graphs[key]
            graph.replay()
        rows.pos[:b] += rows.alive[:b]  # the fed token took its slot; finished rows keep rewriting their last one
        record(t, token, logp)

    lengths, tokens, logprobs = lengths[:N], tokens[:N], logprobs[:N]
    T = int(lengths.max())
    mask = torch.arange(T, device=device) < lengths[:, None]  # (N, T)
    last = tokens.gather(1, (lengths - 1)[:, None])[:, 0]  # (N,) each row's final token
    stopped = (last[:, None] == stop).any(1).tolist()
    return dict(tokens=tokens[:, :T], mask=mask, logprobs=logprobs[:, :T], lengths=lengths,
                finish_reason=["stop" if s else "length" for s in stopped],
                prompt_index=torch.arange(P, device=device).repeat_interleave(G))


def compact(rows, kv, b, keep_rows, N):
    """Move the live rows among the batch's first b to the front, in place (state and cache), and pad to keep_rows
    with finished rows that write the scratch row. The cache moves one layer at a time and only its filled slots:
    the only copy is those of one layer's live rows."""
    keep = rows.alive[:b].nonzero()[:, 0]  # (live,) ascending
    live, filled = len(keep), int(rows.pos[:b].max()) + 1
    for x in rows:
        x[:live] = x[:b][keep]
    rows.out[live:keep_rows], rows.alive[live:keep_rows] = N, False
    for c in kv:
        for layer in c:  # (N, Hkv, max_len, D)
            layer[:live, :, :filled] = layer[keep, :, :filled]
