"""model.py against transformers' Qwen2ForCausalLM on random-weight checkpoints of the same architecture."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

import model as model_module
from helpers import byte_bpe_tokenizer
from model import Qwen2, Qwen2Config, chat_prompt, load_tokenizer, stop_token_ids

transformers = pytest.importorskip("transformers")  # test-only dependency (requirements-dev.txt)

CONFIGS = [  # (tied, heads, kv heads, hidden, intermediate, layers, vocab): GQA 4:1, 1:1, 3:1, odd sizes
    (True, 8, 2, 64, 150, 2, 311),
    (False, 4, 4, 48, 97, 3, 257),
    (False, 6, 2, 84, 61, 2, 1001),
]


def hf_model(tied, heads, kv, hidden, inter, layers, vocab, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                                   num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                                   tie_word_embeddings=tied, max_position_embeddings=256, rope_theta=10000.0)
    hf = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # transformers zero-initialises biases: randomise everything so biases are exercised
        for p in hf.parameters():
            p.normal_(0.0, 0.1)
    return hf


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: f"tied{int(c[0])}-h{c[1]}kv{c[2]}-d{c[3]}")
def pair(request, tmp_path_factory):
    hf = hf_model(*request.param)
    path = tmp_path_factory.mktemp("ckpt")
    hf.save_pretrained(path)
    return hf, Qwen2.from_pretrained(path).eval(), path


def test_logits_match_transformers_float32(pair):
    hf, ours, _ = pair
    idx = torch.randint(0, ours.config.vocab_size, (3, 29), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (hf(idx).logits - ours(idx)).abs().max().item()
    assert diff <= 1e-4


def test_bfloat16_close_to_float32(pair):
    _, ours, path = pair
    ours16 = Qwen2.from_pretrained(path, dtype=torch.bfloat16).eval()
    assert ours16.lm_head.weight.dtype == torch.bfloat16
    idx = torch.randint(0, ours.config.vocab_size, (2, 21), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, low = ours(idx), ours16(idx).float()
    # bf16 keeps 8 mantissa bits (relative rounding 2^-8 ~ 0.4%); a few layers compound it to a few percent
    assert (low - ref).abs().max().item() <= 0.05 * ref.abs().max().item()
    assert (low.argmax(-1) == ref.argmax(-1)).float().mean().item() >= 0.9


def test_hidden_states_and_head(pair):
    _, ours, _ = pair
    idx = torch.randint(0, ours.config.vocab_size, (2, 9))
    with torch.no_grad():
        h = ours(idx, return_hidden=True)  # (B, T, C)
        assert h.shape == (2, 9, ours.config.hidden_size)
        torch.testing.assert_close(ours.lm_head(h), ours(idx), rtol=0, atol=0)


@pytest.mark.parametrize("prefill", ["causal", "cached"])
def test_cached_decode_equals_full_recompute_with_per_row_positions(pair, prefill):
    """A right-padded batched prefill (causal attention over itself, or written at position 0 and attending to the
    cache under its mask), then one-token steps at per-row positions, then a 3-token continuation step: every
    position's logits equal a full forward over that row's sequence so far."""
    _, ours, _ = pair
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randint(0, ours.config.vocab_size, (n,), generator=g) for n in (9, 14, 11)]
    prompt_lens = [3, 7, 4]
    kv = ours.new_kv_cache(3, 16)
    padded = torch.zeros(3, max(prompt_lens), dtype=torch.long)  # right-padded batched prefill
    for i, (s, n) in enumerate(zip(seqs, prompt_lens)):
        padded[i, :n] = s[:n]
    with torch.no_grad():
        pos0 = None if prefill == "causal" else torch.zeros(3, dtype=torch.long)
        first = ours(padded, kv_cache=kv, pos=pos0)  # (B, Lp, V)
        for i, s in enumerate(seqs):
            n = prompt_lens[i]
            assert (first[i, :n] - ours(s[None, :n])[0]).abs().max().item() <= 1e-4
        pos = torch.tensor(prompt_lens)
        for step in range(3):  # three one-token decode steps, each row at its own position
            nxt = torch.stack([s[n + step] for s, n in zip(seqs, prompt_lens)])[:, None]  # (B, 1)
            cached = ours(nxt, kv_cache=kv, pos=pos)[:, 0]  # (B, V)
            for i, s in enumerate(seqs):
                full = ours(s[None, :prompt_lens[i] + step + 1])[0, -1]
                assert (cached[i] - full).abs().max().item() <= 1e-4
            pos = pos + 1
        nxt = torch.stack([s[n + 3:n + 6] for s, n in zip(seqs, prompt_lens)])  # (B, 3): several tokens at once
        cached = ours(nxt, kv_cache=kv, pos=pos)  # (B, 3, V)
        for i, s in enumerate(seqs):
            full = ours(s[None, :prompt_lens[i] + 6])[0, -3:]
            assert (cached[i] - full).abs().max().item() <= 1e-4


@pytest.mark.parametrize("T", [1, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cached_attention_equals_masked_sdpa_with_gqa(T, dtype):
    """model.cached_attention, the cache attention of every device, against torch's SDPA with the same additive mask
    and enable_gqa (the call CUDA decoding made before this function replaced it), both against a float64 SDPA:
    within 2x SDPA's own error in bfloat16, to rounding in float32. Rows see different numbers of slots."""
    g = torch.Generator().manual_seed(6)
    B, H, Hkv, S, D = 3, 12, 2, 37, 32
    q, k, v = (torch.randn(shape, generator=g) for shape in ((B, H, T, D), (B, Hkv, S, D), (B, Hkv, S, D)))
    last = torch.tensor([36, 8, 20])[:, None] - T + 1 + torch.arange(T)  # (B, T) each query's own slot
    visible = torch.arange(S) <= last[:, :, None]  # (B, T, S)
    mask = torch.zeros(B, 1, T, S).masked_fill_(~visible[:, None], float("-inf"))
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask.double(), enable_gqa=True)
    q, k, v, mask = q.to(dtype), k.to(dtype), v.to(dtype), mask.to(dtype)
    ours = model_module.cached_attention(q, k, v, mask).double()
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True).double()
    ours_err, sdpa_err = (ours - ref).abs().max().item(), (sdpa - ref).abs().max().item()
    if dtype == torch.float32:
        assert ours_err <= 1e-5 and sdpa_err <= 1e-5
    else:
        assert 0 < ours_err <= 2 * sdpa_err, (ours_err, sdpa_err)


def greedy_with_cache(model, prompt, n_new):
    kv = model.new_kv_cache(1, len(prompt) + n_new)
    out, pos = list(prompt), torch.zeros(1, dtype=torch.long)
    idx = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(idx, kv_cache=kv, pos=pos)[:, -1]
            pos = pos + idx.shape[1]
            idx = logits.argmax(-1, keepdim=True)
            out.append(idx.item())
    return out[len(prompt):]


def test_greedy_decode_equals_transformers_generate(pair):
    hf, ours, _ = pair
    prompt = torch.randint(0, ours.config.vocab_size, (7,), generator=torch.Generator().manual_seed(4)).tolist()
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, eos_token_id=None,
                          pad_token_id=0, attention_mask=torch.ones(1, 7, dtype=torch.long))[0, 7:].tolist()
    assert greedy_with_cache(ours, prompt, 20) == ref


def test_save_pretrained_loads_in_transformers(pair, tmp_path):
    _, ours, _ = pair
    ours.save_pretrained(tmp_path / "saved")
    cfg = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"]
    hf2 = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path / "saved").eval()
    idx = torch.randint(0, ours.config.vocab_size, (2, 13))
    with torch.no_grad():
        assert (hf2(idx).logits - ours(idx)).abs().max().item() == 0.0


def test_sharded_checkpoints_both_ways(tmp_path):
    hf = hf_model(False, 4, 2, 64, 128, 2, 500)
    hf.save_pretrained(tmp_path / "hf", max_shard_size="100KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    ours = Qwen2.from_pretrained(tmp_path / "hf").eval()
    idx = torch.randint(0, 500, (2, 10))
    with torch.no_grad():
        assert (hf(idx).logits - ours(idx)).abs().max().item() <= 1e-4
    ours.save_pretrained(tmp_path / "ours", max_shard_bytes=100_000)
    shards = [f for f in os.listdir(tmp_path / "ours") if f.endswith(".safetensors")]
    assert len(shards) > 1
    back = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert (back(idx).logits - ours(idx)).abs().max().item() == 0.0


def test_rope_theta_top_level_and_rope_parameters(tmp_path):
    hf = hf_model(True, 4, 2, 32, 64, 1, 100)
    hf.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.pop("rope_parameters", None)
    cfg["rope_theta"] = 5000.0  # transformers 4 style
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert Qwen2.from_pretrained(tmp_path).config.rope_theta == 5000.0
    cfg.pop("rope_theta")
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 123.0}  # transformers 5 style
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert Qwen2.from_pretrained(tmp_path).config.rope_theta == 123.0


def test_from_config_trains_from_scratch():
    cfg = Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    a, b = Qwen2.from_config(cfg, seed=1), Qwen2.from_config(cfg, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert a.lm_head.weight is a.model.embed_tokens.weight
    idx = torch.randint(0, 50, (4, 12))
    loss0 = torch.nn.functional.cross_entropy(a(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
    opt = torch.optim.AdamW(a.parameters(), lr=1e-2)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(a(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * loss0.item()


def test_atomic_save_keeps_old_checkpoint_on_failure(tmp_path, monkeypatch):
    cfg = Qwen2Config(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    m = Qwen2.from_config(cfg)
    m.save_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "tokenizer.json").write_text("{}")
    before = (tmp_path / "ck" / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(model_module, "save_file", boom)
    with torch.no_grad():
        m.model.norm.weight.fill_(2.0)
    with pytest.raises(OSError):
        m.save_pretrained(tmp_path / "ck")
    assert (tmp_path / "ck" / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # no temporary folder left behind
    monkeypatch.undo()
    m.save_pretrained(tmp_path / "ck")  # an overwrite keeps the files it does not own
    assert (tmp_path / "ck" / "tokenizer.json").read_text() == "{}"
    assert torch.equal(Qwen2.from_pretrained(tmp_path / "ck").model.norm.weight, m.model.norm.weight)

# ---- bad input: every error names the file and the tensor or key


@pytest.fixture
def small_ckpt(tmp_path):
    hf_model(False, 2, 1, 16, 32, 1, 64).save_pretrained(tmp_path)
    return tmp_path


def rewrite_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


def test_missing_config(small_ckpt):
    os.remove(small_ckpt / "config.json")
    with pytest.raises(FileNotFoundError, match="config.json"):
        Qwen2.from_pretrained(small_ckpt)


def test_missing_weights(small_ckpt):
    os.remove(small_ckpt / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        Qwen2.from_pretrained(small_ckpt)


def test_unsupported_architecture_is_named(small_ckpt):
    rewrite_config(small_ckpt, architectures=["LlamaForCausalLM"], model_type="llama")
    with pytest.raises(ValueError, match=r"LlamaForCausalLM.*supported: Qwen2ForCausalLM"):
        Qwen2.from_pretrained(small_ckpt)


def edit_tensors(path, fn):
    from safetensors.torch import load_file, save_file
    file = path / "model.safetensors"
    tensors = load_file(file)
    fn(tensors)
    save_file(tensors, file)
    return str(file)


def test_missing_tensor_is_named(small_ckpt):
    edit_tensors(small_ckpt, lambda t: t.pop("model.layers.0.self_attn.k_proj.bias"))
    with pytest.raises(ValueError, match=r"missing tensor.*model\.layers\.0\.self_attn\.k_proj\.bias"):
        Qwen2.from_pretrained(small_ckpt)


def test_extra_tensor_is_named(small_ckpt):
    file = edit_tensors(small_ckpt, lambda t: t.update({"model.layers.0.self_attn.o_proj.bias": torch.zeros(16)}))
    with pytest.raises(ValueError, match=rf"{file}.*unexpected tensor 'model\.layers\.0\.self_attn\.o_proj\.bias'"):
        Qwen2.from_pretrained(small_ckpt)


def test_wrong_shape_is_named(small_ckpt):
    file = edit_tensors(small_ckpt, lambda t: t.update({"model.norm.weight": torch.ones(17)}))
    with pytest.raises(ValueError, match=rf"{file}.*'model\.norm\.weight' has shape \(17,\), expected \(16,\)"):
        Qwen2.from_pretrained(small_ckpt)


def test_pickle_is_never_loaded(small_ckpt):
    os.remove(small_ckpt / "model.safetensors")
    torch.save({}, small_ckpt / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="pickles are never loaded"):
        Qwen2.from_pretrained(small_ckpt)

# ---- tokenizer and chat format


def test_tokenizer_chat_format_and_stop_tokens(tmp_path):
    tok = byte_bpe_tokenizer(["What is 2+3? The answer is 5."] * 10)
    tok.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(tmp_path)
    text = chat_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}])
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+3?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(text).ids
    assert ids.count(tok.token_to_id("<|im_start|>")) == 3 and ids.count(tok.token_to_id("<|im_end|>")) == 2
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert stop_token_ids(tok) == [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path / "nowhere")


def test_fused_pieces_trace_whole_with_dynamic_shapes():
    """The element-wise functions that torch.compile fuses on CUDA (model.fused_on_cuda) trace as one graph each,
    with no graph break and for any batch and span without recompiling (what a CUDA graph capture of the decode step
    needs), and compute what they compute op by op. aot_eager traces as torch.compile does but runs the traced ops
    without generating code, so this runs in seconds on the CPU."""
    from torch._dynamo.utils import counters  # the count of compiled frames (no public counter exists)
    torch._dynamo.reset()
    counters.clear()
    fns = {f.__name__: torch.compile(f.__wrapped__, dynamic=True, fullgraph=True, backend="aot_eager")
           for f in (model_module.rms_norm, model_module.apply_rotary, model_module.silu_mul,
                     model_module.masked_softmax)}
    g = torch.Generator().manual_seed(7)
    r = lambda *shape: torch.randn(*shape, generator=g)
    for b, span in ((17, 40), (9, 77), (24, 130)):  # sizes unequal to the others: duck sizing would tie them
        args = {"rms_norm": (r(b, 1, 64), r(64), 1e-6), "apply_rotary": (r(b, 4, 1, 16), r(b, 1, 1, 16), r(b, 1, 1, 16)),
                "silu_mul": (r(b, 1, 96), r(b, 1, 96)),
                "masked_softmax": (r(b, 2, 2, 1, span), torch.zeros(b, 1, 1, 1, span), 0.25, torch.float32)}
        for name, fn in fns.items():
            torch.testing.assert_close(fn(*args[name]), getattr(model_module, name)(*args[name]), rtol=0, atol=0)
    assert counters["stats"]["unique_graphs"] == len(fns)  # one graph each, reused for every shape after the first
