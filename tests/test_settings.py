"""Every setting checked before any work: a bad value, a file setting that cannot be used, an out_dir that cannot be
one run's folder, each one line and exit status 2 before the model loads; a fresh run never mixes with another run's
files, and leaves them as they were."""
import hashlib
import importlib.util
import os

import pytest

import checkpoint
import ghpo
import probes
from configurator import UsageError

pytestmark = pytest.mark.usefixtures("restore_ghpo_config")


@pytest.fixture
def no_model(monkeypatch):
    """The loaders fail the test if a run gets as far as loading a model or tokenizer."""
    def loaded(*a, **k):
        raise AssertionError("the model was loaded before the bad setting was refused")
    monkeypatch.setattr(checkpoint, "load_model", loaded)
    monkeypatch.setattr(checkpoint, "open_tokenizer", loaded)


def refused(args, capsys):
    """ghpo.cli(args): exit status 2 and one line on stderr, nothing on stdout; returns that line."""
    assert ghpo.cli(args) == 2, args
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, (args, out, err)
    return err.strip()


BAD = [("group_size=0", "group_size must be >= 2"), ("group_size=1", "group_size must be >= 2"),
       ("prompts_per_step=0", "prompts_per_step must be >= 1"), ("max_new_tokens=0", "max_new_tokens must be >= 1"),
       ("top_p=0", "top_p must be in (0, 1]"), ("top_p=1.5", "top_p must be in (0, 1]"), ("lr=-1", "lr must be >= 0"),
       ("micro_batch=0", "micro_batch must be >= 1"), ("aime_samples=0", "aime_samples must be >= 1"),
       ("temperature=0", "temperature must be > 0"), ("temperature=0.0", "temperature must be > 0"),
       ("rl_steps=-1", "rl_steps must be >= 0"), ("hint_ratios=(1.5,)", "hint_ratios must be one or more ratios"),
       ("hint_ratios=()", "hint_ratios must be one or more ratios"), ("hint_ratios=(0.5,1)", "hint_ratios must be"),
       ("bench_limit=-1", "bench_limit must be >= 0"), ("warmup_frac=2", "warmup_frac must be in [0, 1]"),
       ("ckpt_interval=-1", "ckpt_interval must be >= 0"), ("eval_interval=-1", "eval_interval must be >= 0"),
       ("eps_low=-0.1", "eps_low must be in [0, 1)"), ("eps_high=-0.2", "eps_high must be >= 0"),
       ("top_k=-1", "top_k must be >= 0"), ("beta1=1", "beta1 must be in [0, 1)"), ("beta2=-0.5", "beta2 must be"),
       ("kl_coef=-1", "kl_coef must be >= 0"), ("weight_decay=-0.1", "weight_decay must be >= 0"),
       ("ppo_epochs=0", "ppo_epochs must be >= 1"), ("grad_clip=0", "grad_clip must be > 0"),
       ("eval_temperature=0", "eval_temperature must be > 0"), ("eval_per_level=0", "eval_per_level must be >= 1"),
       ("fixed_hint_ratio=1", "fixed_hint_ratio must be in [0, 1)"), ("train_levels=()", "train_levels must be"),
       ("eval_levels=()", "eval_levels must be"), ("start_hint_step=-1", "start_hint_step must be >= 0"),
       ("sample_rows=-1", "sample_rows must be >= 0"), ("threads=-2", "threads must be >= 0"),
       ("replay_size=-1", "replay_size must be >= 0"), ("hint_loss_coef=-1", "hint_loss_coef must be >= 0"),
       ("dapo_max_rounds=0", "dapo_max_rounds must be >= 1"), ("kernel_impl=fast", "kernel_impl must be one of"),
       ("device=mps", "device must be one of"),
       ("train_file=data/train.jsonl", "train_file='data/train.jsonl': the demo task (task=arith) makes its own"),
       ("gpqa_file=nowhere/gpqa.csv", "gpqa_file: 'nowhere/gpqa.csv' not found")]
if importlib.util.find_spec("wandb") is None:  # not a requirement: where it is missing, asking for it is an error
    BAD.append(("wandb_log=True", "wandb_log=True needs the wandb package"))


@pytest.mark.parametrize("arg, message", BAD, ids=[a for a, _ in BAD])
def test_a_bad_setting_is_one_line_before_anything_loads_or_is_written(arg, message, tmp_path, capsys, no_model):
    out = tmp_path / "out"
    err = refused(["--config", "small.py", f"--{arg}", f"--out_dir={out}"], capsys)
    assert message in err, err
    assert not out.exists()  # refused before the run made its folder


def test_a_demo_level_without_training_problems_left_is_one_line(tmp_path, capsys, no_model):
    err = refused(["--config", "small.py", "--eval_per_level=100000", f"--out_dir={tmp_path}"], capsys)
    assert "eval_per_level=100000 leaves no training problems" in err


@pytest.mark.parametrize("key", ["probe_per_level", "pass_k"])
def test_the_probes_settings_are_checked_before_the_model_loads(key, no_model):
    with pytest.raises(UsageError, match=f"{key} must be >= 1, got -1"):
        probes.main(["--config", "small.py", f"--{key}=-1"])


def test_out_dir_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, no_model, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    assert "out_dir: " + repr(str(f)) + " is a file" in refused([f"--out_dir={f}"], capsys)
    assert "cannot make the folder" in refused([f"--out_dir={f / 'sub'}"], capsys)
    monkeypatch.setattr(checkpoint.os, "access", lambda path, mode: False)  # root may write anywhere: as if not
    assert "is not writable" in refused([f"--out_dir={tmp_path / 'locked'}"], capsys)


def test_resume_without_a_checkpoint_is_one_line(tmp_path, capsys, no_model):
    err = refused([f"--out_dir={tmp_path}", "--resume=True"], capsys)
    assert f"no checkpoint (ckpt-NNNNNN) in {tmp_path}" in err


def a_finished_run(folder):
    """The files a run leaves (their contents do not matter here), and a file of someone else's."""
    for name, text in (("metrics.jsonl", '{"step": 0}\n'), ("summary.json", "{}"), ("model/model.safetensors", "w"),
                       ("ckpt-000002/state.pt", "s"), ("notes.txt", "mine")):
        os.makedirs(os.path.dirname(folder / name), exist_ok=True)
        (folder / name).write_text(text)


def snapshot(folder):
    """{path: (sha256, mtime)} of every file under folder."""
    return {os.path.join(d, n): (hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest(),
                                 os.stat(os.path.join(d, n)).st_mtime_ns)
            for d, _, names in os.walk(folder) for n in names}


def test_a_fresh_run_refuses_a_folder_holding_a_run_and_changes_nothing(tmp_path, capsys, no_model):
    a_finished_run(tmp_path)
    before = snapshot(tmp_path)
    err = refused(["--config", "small.py", f"--out_dir={tmp_path}"], capsys)
    assert "holds another run's files (ckpt-000002, metrics.jsonl, model, summary.json)" in err
    assert "--resume=True" in err and "--overwrite=True" in err
    assert refused(["--config", "small.py", f"--out_dir={tmp_path}", "--eval_only=True"], capsys) == err
    assert snapshot(tmp_path) == before


def test_overwrite_removes_the_old_runs_files_and_nothing_else(tmp_path):
    a_finished_run(tmp_path)
    checkpoint.check_out_dir(str(tmp_path), resume=False, overwrite=True)
    assert os.listdir(tmp_path) == ["notes.txt"]
    checkpoint.check_out_dir(str(tmp_path), resume=False, overwrite=False)  # an empty folder (but notes): fine
