"""The real Qwen2.5 tokenizer (data/qwen_tokenizer.py, from qwen-agent's BPE ranks) against tiktoken on the same ranks,
transformers on the same file, known ids of the released tokenizer, and the chat format and stop ids of model.py."""
import ast
import json
import os
import unicodedata

import pytest
import torch

from data import qwen_tokenizer
from model import Qwen2, Qwen2Config, chat_prompt, load_tokenizer, stop_token_ids

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# hand-written text across scripts, digits, whitespace shapes, LaTeX, code and the chat markers
VARIED = [
    "Hello world", " Hello  world ", "hello\n\nworld\r\n\tend", "I'm sure they'll say it's John's DON'T",
    "12345678901234567890 + 3.14159 = x^2", "价格是 ¥1,234.50，对吗？", "日本語のテキストとカタカナ・ひらがな",
    "Привет, мир! Ёжик", "مرحبا بالعالم", "עברית עם ניקוד", "हिन्दी पाठ", "Ελληνικά: αβγ ΔΕΖ", "한국어 문장입니다",
    "emoji 😀👍🏽🇫🇷 and ZWJ 👩‍👩‍👧", "café naïve façade Ångström", "e\u0301 and A\u030a (decomposed)",
    "ﬁ ligature, ① circled, ｆｕｌｌ width", "\\frac{a}{b} + \\sqrt{x_1^2} \\boxed{\\dfrac{3}{4}}",
    "    indented\n  \n\n\n",
    "def f(x):\n    return x**2  # square\n", "tabs\t\tand   spaces   ", "'s 't 're 've 'm 'll 'd", "''''",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n4\n</think><|im_end|>",
    "<|endoftext|><|fim_prefix|>a<|fim_middle|>b<|fim_suffix|><tool_call>{}</tool_call>", "\u0000\u0001\x7f\u00ad",
    "a" * 300, " " * 257, "\n" * 40, "🙂" * 30, "x\u200by\ufeffz", "",
]


def corpus():
    """VARIED plus real problem and solution texts of the training file and two benchmarks."""
    texts = list(VARIED)
    for name, keys in (("math_train_l345.jsonl", ("problem", "solution")), ("olympiadbench_test.jsonl", ("question",)),
                       ("minerva_math_test.jsonl", ("problem", "solution"))):
        with open(os.path.join(REPO, "data", name)) as f:
            rows = [json.loads(line) for _, line in zip(range(60), f)]
        texts += [r[k] if isinstance(r[k], str) else "\n".join(r[k]) for r in rows for k in keys if r.get(k)]
    return texts


@pytest.fixture(scope="module")
def tok(qwen_tokenizer_file):
    return load_tokenizer(os.path.dirname(qwen_tokenizer_file))


def test_known_ids_of_the_released_tokenizer(tok):
    assert tok.encode("Hello world").ids == [9707, 1879]
    assert tok.encode("<|im_start|>user\n").ids == [151644, 872, 198]
    assert tok.encode("<|im_start|>system\n").ids == [151644, 8948, 198]
    assert tok.encode("<|im_start|>assistant\n").ids == [151644, 77091, 198]
    assert tok.get_vocab_size() == 151665
    assert [tok.token_to_id(t) for t in qwen_tokenizer.SPECIAL_TOKENS] == list(range(151643, 151665))
    assert tok.id_to_token(151664) == "<|file_sep|>" and tok.id_to_token(151665) is None


def test_pattern_is_qwen_agents():
    """The pre-tokenizer regex equals the PAT_STR of the tokenizer module qwen-agent ships beside the ranks (read as
    source: importing qwen_agent would need its dependencies)."""
    path = os.path.join(os.path.dirname(qwen_tokenizer.ranks_path()), "tokenization_qwen.py")
    tree = ast.parse(open(path).read())
    pat = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
           and getattr(n.targets[0], "id", None) == "PAT_STR"]
    assert pat == [qwen_tokenizer.PATTERN]


def test_same_ids_as_tiktoken_on_the_same_ranks(tok):
    """tiktoken applies the ranks directly (the Qwen team's own tokenizer code wraps it): the merges derived from the
    ranks must give the same ids on every text (after NFC, which the Hugging Face tokenizer applies and tiktoken
    does not)."""
    tiktoken = pytest.importorskip("tiktoken")
    ranks = qwen_tokenizer.read_ranks(qwen_tokenizer.ranks_path())
    enc = tiktoken.Encoding("qwen2", pat_str=qwen_tokenizer.PATTERN, mergeable_ranks=ranks,
                            special_tokens={t: 151643 + i for i, t in enumerate(qwen_tokenizer.SPECIAL_TOKENS)})
    texts = corpus()
    assert len(texts) > 200
    for text in texts:
        text = unicodedata.normalize("NFC", text)
        assert tok.encode(text).ids == enc.encode(text, allowed_special="all"), text[:80]


def test_transformers_fast_tokenizer_agrees_on_every_id(tok, qwen_tokenizer_file):
    transformers = pytest.importorskip("transformers")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=qwen_tokenizer_file)
    assert len(hf) == 151665
    for text in corpus():
        ids = tok.encode(text).ids
        assert hf(text, add_special_tokens=True)["input_ids"] == ids, text[:80]
        assert hf.decode(ids) == tok.decode(ids, skip_special_tokens=False)
        assert hf.decode(ids, skip_special_tokens=True) == tok.decode(ids, skip_special_tokens=True)


def test_round_trip_is_nfc(tok):
    for text in corpus():
        assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == unicodedata.normalize("NFC", text)
    assert tok.encode("e\u0301").ids == tok.encode("\u00e9").ids  # a decomposed accent is composed first


def test_chat_prompt_is_the_qwen25_format(tok):
    messages = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "What is 1+1?"}]
    text = chat_prompt(messages)
    assert text == ("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 1+1?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    ids = tok.encode(text).ids
    assert ids[:3] == [151644, 8948, 198] and ids[-3:] == [151644, 77091, 198]
    assert ids.count(151644) == 3 and ids.count(151645) == 2  # each marker is one token, never split
    assert chat_prompt(messages, add_generation_prompt=False).endswith("What is 1+1?<|im_end|>\n")


def test_stop_ids_and_decoding_with_special_tokens_skipped(tok):
    assert stop_token_ids(tok) == [151645, 151643]  # <|im_end|>, <|endoftext|>
    completion = tok.encode("<think>\nx\n</think>\n<answer>\n\\boxed{2}\n</answer><|im_end|>").ids
    assert completion[-1] == 151645
    assert tok.decode(completion, skip_special_tokens=True) == "<think>\nx\n</think>\n<answer>\n\\boxed{2}\n</answer>"
    # the tool-call tags are added tokens that are not special: kept in the text, as in Qwen2.5's own tokenizer.json
    tags = "<tool_call>a</tool_call>"
    assert tok.decode(tok.encode(tags).ids, skip_special_tokens=True) == tags


def test_embedding_rows_beyond_the_tokenizer_are_handled(tok):
    """Qwen2.5's embedding has 151,936 rows and its tokenizer 151,665 ids. A model (a random one above all) can sample
    the 271 ids between them: the sampler accepts them, they count in the loss like any sampled token, and decoding
    drops them, so the verifier sees only text."""
    assert tok.decode([9707, 151700, 151935, 1879], skip_special_tokens=True) == "Hello world"
    cfg = Qwen2Config(vocab_size=151936, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    model = Qwen2.from_config(cfg, seed=0).eval()
    with torch.no_grad():  # make an id beyond the tokenizer the greedy choice
        model.lm_head.weight[151800] = model(torch.tensor([[9707]]), return_hidden=True)[0, -1] * 100
    from rollout import sample_groups
    out = sample_groups(model, [tok.encode("Hello").ids], 1, 3, temperature=0.0, stop_ids=stop_token_ids(tok))
    sampled = out["tokens"][0][out["mask"][0]].tolist()
    assert 151800 in sampled
    assert tok.decode(sampled, skip_special_tokens=True) == tok.decode([i for i in sampled if i < 151665])


def test_bad_ranks_file_names_the_line(tmp_path):
    bad = tmp_path / "bad.tiktoken"
    bad.write_bytes(b"IQ== 0\nIg== 2\n")
    with pytest.raises(ValueError, match=r"bad.tiktoken:2: rank 2 out of order"):
        qwen_tokenizer.read_ranks(str(bad))
    bad.write_bytes(b"IQ== 0\nnot base64!\n")
    with pytest.raises(ValueError, match=r"bad.tiktoken:2: expected `base64 rank`"):
        qwen_tokenizer.read_ranks(str(bad))
