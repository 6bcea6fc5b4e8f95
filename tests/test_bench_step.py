"""bench/step.py's --profile summary: matrix products are counted as such, everything else as the rest."""
import importlib.util
import os

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_step_bench():
    spec = importlib.util.spec_from_file_location("bench_step", os.path.join(REPO, "bench", "step.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_summary_splits_matrix_products_from_the_rest():
    bench = load_step_bench()
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    with torch.profiler.profile() as prof:
        for _ in range(20):
            a @ b  # aten::mm
        for _ in range(200):
            torch.exp(a) + 1.0  # aten::exp, aten::add: not matrix products
    summary = bench.profile_summary(prof)
    names = [k for k, _ in summary["top"]]
    assert "aten::mm" in names and "aten::exp" in names
    mm = dict(summary["top"])["aten::mm"]
    assert abs(summary["gemm"] - mm) <= 1e-3  # only the mm calls count as matrix products here
    assert 0 < summary["gemm"] < summary["total"]
    assert summary["total"] >= sum(v for _, v in summary["top"]) - 1e-3
