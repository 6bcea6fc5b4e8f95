import os
import sys

import pytest

# the repo is a flat folder of modules: make them importable from tests/
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def restore_ghpo_config():
    """configure() and main() write ghpo's module-level settings: restore them after the test."""
    import ghpo
    saved = {k: getattr(ghpo, k) for k in ghpo.config_keys}
    yield
    for k, v in saved.items():
        setattr(ghpo, k, v)
