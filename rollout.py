"""
Rollouts for group-based RL: G sampled completions for every prompt, decoded together with a KV cache.
Reads top to bottom: input checks -> one sampling step (temperature, top-k, top-p) -> sample_groups.

Each distinct prompt is prefilled once (all prompts in one right-padded batch: every row has its own position, so a
short prompt's padding slots are overwritten by its own completion before anything attends to them), its cache is
copied to its G rows, and then all P*G rows decode one token per step. Rows that finish are dropped from the batch
(their cache rows too) once enough of them have finished, and decoding stops when every row has finished.
"""
import torch
import torch.nn.functional as F

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
# the sampler


@torch.no_grad()
def sample_groups(model, prompts, G, max_new_tokens, temperature=1.0, top_k=0, top_p=1.0, stop_ids=(), seed=0,
                  generator=None, pad_id=0, compact_below=0.75):
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
    Randomness comes from `generator` (a torch.Generator on the model's device) or one seeded with `seed`.
    compact_below: drop finished rows from the batch (and the KV cache) when the live fraction falls to or below it."""
    prompts = check_inputs(model, prompts, G, max_new_tokens, temperature, top_k, top_p, stop_ids)
    device = model.lm_head.weight.device
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(seed)
    P, N = len(prompts), len(prompts) * G
    prompt_lens = torch.tensor([len(p) for p in prompts], device=device)  # (P,)
    budget = (model.config.max_position_embeddings - prompt_lens).clamp(max=max_new_tokens)  # (P,) tokens allowed
    max_len = int((prompt_lens + budget).max())  # cache slots: the longest prompt + completion

    # prefill every distinct prompt once, right-padded into one batch, and copy each prompt's cache to its G rows
    padded = torch.zeros(P, int(prompt_lens.max()), dtype=torch.long, device=device)  # (P, Lmax), any id pads
    for i, p in enumerate(prompts):
        padded[i, :len(p)] = torch.tensor(p, device=device)
    kv = model.new_kv_cache(P, max_len)
    h = model(padded, kv_cache=kv, pos=torch.zeros(P, dtype=torch.long, device=device), return_hidden=True)
    h_last = h[torch.arange(P, device=device), prompt_lens - 1]  # (P, C) hidden state at each prompt's last token
    logits = model.lm_head(h_last).float().repeat_interleave(G, 0)  # (N, V)
    kv = tuple(c.repeat_interleave(G, dim=1) for c in kv)  # (L, N, Hkv, max_len, D) each

    # decode: batch row b is output row rows[b]; it writes its next token at position pos[b]
    rows = torch.arange(N, device=device)  # (B,)
    pos = prompt_lens.repeat_interleave(G)  # (B,)
    budget = budget.repeat_interleave(G)  # (B,)
    alive = torch.ones(N, dtype=torch.bool, device=device)  # (B,)
    stop = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    tokens = torch.full((N, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(N, max_new_tokens, device=device)
    lengths = torch.zeros(N, dtype=torch.long, device=device)
    for t in range(max_new_tokens):
        u = torch.rand(N, generator=generator, device=device)[rows]  # (B,) one uniform per output row and step
        token, logp = sample_next(logits, u, temperature, top_k, top_p)  # (B,) each
        tokens[rows, t] = torch.where(alive, token, pad_id)
        logprobs[rows, t] = torch.where(alive, logp, 0.0)
        ended = alive & (torch.isin(token, stop) | (budget <= t + 1))  # (B,)
        lengths[rows] = torch.where(ended, t + 1, lengths[rows])
        alive &= ~ended
        n_alive = int(alive.sum())  # the one host sync per step: it decides stopping and compaction
        if n_alive == 0:
            break
        if n_alive <= compact_below * len(rows):  # drop finished rows: later steps do only the live rows' work
            keep = alive.nonzero()[:, 0]
            rows, pos, budget, alive, token = rows[keep], pos[keep], budget[keep], alive[keep], token[keep]
            kv = tuple(c.index_select(1, keep) for c in kv)
        # feed the sampled tokens; a finished row still in the batch rewrites its own last slot and is ignored
        h = model(token[:, None], kv_cache=kv, pos=pos, return_hidden=True)  # (B, 1, C)
        logits = model.lm_head(h[:, 0]).float()  # (B, V)
        pos = pos + alive

    T = int(lengths.max())
    mask = torch.arange(T, device=device) < lengths[:, None]  # (N, T)
    last = tokens.gather(1, (lengths - 1)[:, None])[:, 0]  # (N,) each row's final token
    stopped = torch.isin(last, stop).tolist()
    return dict(tokens=tokens[:, :T], mask=mask, logprobs=logprobs[:, :T], lengths=lengths,
                finish_reason=["stop" if s else "length" for s in stopped],
                prompt_index=torch.arange(P, device=device).repeat_interleave(G))
