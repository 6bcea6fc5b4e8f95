"""Small builders shared by the test files (also imported by the subprocess scripts some tests launch)."""
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def byte_bpe_tokenizer(texts, vocab_size=300):
    """A byte-level BPE tokenizer with Qwen's special tokens, trained on texts: Qwen's tokenizer family, in small."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def sampled(rows, n_prompts, G):
    """rollout.sample_groups' output for scripted completions: rows (n_prompts * G lists of ids, prompt-major, each
    ending at its stop token) -> tokens, mask, logprobs, lengths, finish_reason, prompt_index."""
    T = max(map(len, rows))
    tokens = torch.tensor([r + [0] * (T - len(r)) for r in rows])  # (N, T)
    mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows], dtype=torch.bool)  # (N, T)
    return dict(tokens=tokens, mask=mask, logprobs=torch.zeros(tokens.shape), lengths=mask.sum(1),
                finish_reason=["stop"] * len(rows), prompt_index=torch.arange(n_prompts).repeat_interleave(G))


def scripted_sampler(tok, by_problem, calls, cut=()):
    """rollout.sample_groups' stand-in: a problem is answered right only when its prompt carries a hint (in the user
    message) of at least its "needs" ratio; a problem in `cut` is answered without its stop token (cut by the length
    limit). Records every batch of prompts and the tokens it returned."""
    import ghpo  # the hint template it reads prompts with
    end = tok.token_to_id("<|im_end|>")

    def sample(model, prompt_list, G, max_new_tokens, **kw):
        rows, texts = [], [tok.decode(p) for p in prompt_list]
        for text in texts:
            problem, _, hint = text.partition(ghpo.hint_template)
            p = by_problem[problem.rstrip("\n")]
            ratio = round(len(hint[:-1]) / len(p["solution"]), 2) if hint else 0.0
            answer = p["answer"] if ratio >= p["needs"] else str((int(p["answer"]) + 1) % 100)
            completion = tok.encode(f"\\boxed{{{answer}}}").ids + ([] if p["problem"] in cut else [end])
            rows += [completion] * G
        out = sampled(rows, len(prompt_list), G)
        calls.append((texts, int(out["mask"].sum())))
        return out
    return sample


# a tiny demo base (conftest.py's tiny_base: its command, data/demo_base.py) and a short run from it
TINY_BASE = ["--n_layer=1", "--n_embd=32", "--n_head=2", "--n_kv_head=1", "--n_inner=64", "--base_steps=20",
             "--base_batch=8", "--base_row_len=128", "--eval_per_level=8"]
TINY_RUN = ["--config", "small.py", "--eval_per_level=8", "--max_new_tokens=24", "--eval_levels=(1,7)",
            "--train_levels=(1,7)", "--hard_levels=(7,)", "--group_size=4", "--prompts_per_step=4"]
