"""
The real Qwen2 / Qwen2.5 tokenizer with no download. The Qwen team's qwen-agent wheel (Apache-2.0, on the package
index) ships qwen_agent/utils/qwen.tiktoken: the 151,643 byte-level BPE ranks of Qwen2 and Qwen2.5, one
`base64(token bytes) rank` per line. This writes them as a Hugging Face tokenizer.json: BPE over GPT-2's byte-to-
character alphabet, NFC normalisation, the Qwen2 pre-tokenizer regex, and the 22 special tokens at 151643-151664.

    pip install --no-deps qwen-agent==0.0.34      # only the data file is read; nothing of qwen_agent is imported
    python data/qwen_tokenizer.py checkpoints/my-qwen   # -> checkpoints/my-qwen/tokenizer.json

tiktoken merges by rank: the adjacent pair whose concatenation has the lowest rank merges first. A Hugging Face BPE
needs the merges themselves, so each token's merge is found by running that rule on its own bytes with only the
ranks below its own: the two parts left are the pair that makes it (tests/test_qwen_tokenizer.py checks the result
against tiktoken on the same ranks, and against transformers on the same file).
"""
import base64
import importlib.util
import os
import sys

# Qwen2's pre-tokenizer (the same pattern as qwen_agent/utils/tokenization_qwen.py's PAT_STR): contractions, letters
# with at most one leading non-letter, single digits, punctuation runs, newlines, whitespace
PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
           r"|\s+(?!\S)|\s+")
# Qwen2.5's added tokens from id 151643 on; all are special except the two tool-call tags, which decode as text
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
                  "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")
NOT_SPECIAL = ("<tool_call>", "</tool_call>")
N_RANKS = 151643


def ranks_path():
    """qwen.tiktoken inside the installed qwen-agent package, found without importing it (its dependencies are not
    needed)."""
    spec = importlib.util.find_spec("qwen_agent")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("qwen-agent is not installed: `pip install --no-deps qwen-agent==0.0.34` ships "
                                "qwen_agent/utils/qwen.tiktoken, the Qwen2 BPE ranks")
    path = os.path.join(list(spec.submodule_search_locations)[0], "utils", "qwen.tiktoken")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: not found in the installed qwen-agent")
    return path


def read_ranks(path):
    """{token bytes: rank} from a .tiktoken file; the ranks must be 0..n-1, each once."""
    ranks = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                token, rank = base64.b64decode(token, validate=True), int(rank)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: expected `base64 rank`, got {line[:60]!r} ({e})") from None
            if rank != len(ranks) or token in ranks:
                raise ValueError(f"{path}:{lineno}: rank {rank} out of order or token repeated (expected {len(ranks)})")
            ranks[token] = rank
    return ranks


def byte_alphabet():
    """GPT-2's reversible byte -> character map used by byte-level BPE: printable Latin-1 bytes stand for
    themselves, the other 68 bytes for the characters from U+0100 on, in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    shifted = iter(range(256, 512))
    return {b: chr(b) if b in keep else chr(next(shifted)) for b in range(256)}


def merges_from_ranks(ranks):
    """[(left, right)] in rank order: for every token of two or more bytes, the pair that tiktoken's rule (merge the
    adjacent pair whose concatenation has the lowest rank) reaches on the token's own bytes using only lower ranks."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best, at = rank, -1
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1], rank)
                if r < best:
                    best, at = r, i
            if at < 0:
                break
            parts[at:at + 2] = [parts[at] + parts[at + 1]]
        if len(parts) != 2:
            raise ValueError(f"rank {rank}: token {token!r} is not a merge of two lower-ranked tokens")
        merges.append((parts[0], parts[1]))
    return merges


def build_tokenizer(ranks=None):
    """A tokenizers.Tokenizer equal to Qwen2.5's tokenizer.json (ranks: {bytes: rank}; default: qwen-agent's)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    ranks = read_ranks(ranks_path()) if ranks is None else ranks
    if len(ranks) != N_RANKS:
        raise ValueError(f"expected the {N_RANKS} Qwen2 ranks, got {len(ranks)}")
    alphabet = byte_alphabet()
    text = lambda b: "".join(alphabet[x] for x in b)
    vocab = {text(token): rank for token, rank in ranks.items()}
    merges = [(text(a), text(b)) for a, b in merges_from_ranks(ranks)]
    tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    for t in SPECIAL_TOKENS:  # one at a time: ids follow the order of addition
        add = tok.add_tokens if t in NOT_SPECIAL else tok.add_special_tokens
        add([AddedToken(t, normalized=False, special=t not in NOT_SPECIAL)])
    if tok.token_to_id(SPECIAL_TOKENS[0]) != N_RANKS or tok.get_vocab_size() != N_RANKS + len(SPECIAL_TOKENS):
        raise RuntimeError("special tokens did not land at 151643-151664")
    return tok


def write_tokenizer(folder, ranks=None):
    """Write folder/tokenizer.json (atomically) and return its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "tokenizer.json")
    build_tokenizer(ranks).save(path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python data/qwen_tokenizer.py OUT_FOLDER [RANKS.tiktoken]")
    out = write_tokenizer(sys.argv[1], read_ranks(sys.argv[2]) if len(sys.argv) == 3 else None)
    print(f"wrote {out}")
