import os
import sys

import pytest

# the repo is a flat folder of modules: make them importable from tests/
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def restore_ghpo_config():
    """configure() and main() write the module-level settings of ghpo and data/demo_base: restore them after the
    test."""
    import ghpo
    from data import demo_base
    saved = [(m, {k: getattr(m, k) for k in m.config_keys}) for m in (ghpo, demo_base)]
    yield
    for m, values in saved:
        for k, v in values.items():
            setattr(m, k, v)
