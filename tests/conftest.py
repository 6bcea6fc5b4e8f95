import os
import sys

import pytest
import torch

# the repo is a flat folder of modules: make them importable from tests/
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def restore_ghpo_config():
    """configure() and main() write the module-level settings of ghpo.py, probes.py and data/demo_base.py, and torch's
    thread count: restore them after the test."""
    import ghpo
    import probes
    from data import demo_base
    saved = [(m, {k: getattr(m, k) for k in m.config_keys}) for m in (ghpo, probes, demo_base)]
    threads = torch.get_num_threads()  # --threads=N sets torch's, for the whole process
    yield
    for m, values in saved:
        for k, v in values.items():
            setattr(m, k, v)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def qwen_tokenizer_file(tmp_path_factory):
    """The real Qwen2.5 tokenizer.json, converted once per session from qwen-agent's ranks (data/qwen_tokenizer.py;
    a few seconds). Skips with the install line when qwen-agent (requirements-dev.txt) is missing."""
    from data import qwen_tokenizer
    try:
        ranks = qwen_tokenizer.ranks_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return qwen_tokenizer.write_tokenizer(str(tmp_path_factory.mktemp("qwen_tok")), qwen_tokenizer.read_ranks(ranks))


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A tiny base model trained by the demo base's command (python -m data.demo_base), made.json and all."""
    from data import demo_base
    from helpers import TINY_BASE
    cache = tmp_path_factory.mktemp("base")
    saved, threads = {k: getattr(demo_base, k) for k in demo_base.config_keys}, torch.get_num_threads()
    folder = demo_base.make_base(TINY_BASE + ["--threads=1", f"--base_cache={cache}"])
    for k, v in saved.items():
        setattr(demo_base, k, v)
    torch.set_num_threads(threads)
    return folder
