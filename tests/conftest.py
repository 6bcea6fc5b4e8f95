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


@pytest.fixture(scope="module")
def tok():
    """The demo task's tokenizer, knowing the hint template."""
    import ghpo
    from data.arith import build_tokenizer
    return build_tokenizer([ghpo.hint_template])


@pytest.fixture
def scripted(tok, monkeypatch):
    """Five problems that need no hint, a 0.25, 0.5 or 0.75 hint, or are unsolvable even with the last one; a record
    of the sampler's calls; helpers.scripted_sampler answering them (hints in the user message, G = 4), put in place of
    rollout.sample_groups for the test."""
    import re
    import ghpo
    import rollout
    from data.arith import level_problems
    from helpers import scripted_sampler
    problems = [dict(level_problems(5)[i]) for i in range(5)]
    for p, needs in zip(problems, (0.0, 0.25, 0.5, 0.75, 2.0)):  # 2.0: unsolvable even with the last hint
        p["needs"] = needs
        p["solution"] = re.sub(r", \d+ left", "", p["solution"])  # a character prefix of "left" has no token
    calls = []
    ghpo.group_size, ghpo.hint_in_answer = 4, False  # hints in the user message, where the sampler reads them
    sample = scripted_sampler(tok, {p["problem"]: p for p in problems}, calls)
    monkeypatch.setattr(rollout, "sample_groups", sample)
    return problems, calls, sample


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
