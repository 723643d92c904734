"""tools.train / tools.evaluate end to end on a tiny synthetic dataset: log.jsonl, checkpoints, resume."""

import json
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset

    root = tmp_path_factory.mktemp("cli_data")
    generate_dataset(root, SyntheticConfig(seconds=1.0, width=400, height=225, seed=5))
    return root


def _run(*args):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_train_resume_and_evaluate(data_root, tmp_path):
    work = tmp_path / "work"
    common = ["sparsedrive_ros.tools.train", "--config", "micro", "--data", str(data_root), "--work-dir", str(work),
              "--device", "cpu"]
    _run(*common, "--max-steps", "2")
    ckpt = torch.load(work / "latest.pt", weights_only=False)
    assert ckpt["meta"]["step"] == 2 and ckpt["meta"]["config_name"] == "micro"
    # The inference side's loader (safe, weights-only unpickling) reads the training checkpoint.
    from sparsedrive_ros.model.checkpoint import load_checkpoint

    weights = load_checkpoint(work / "latest.pt")
    assert set(weights) == set(ckpt["state_dict"])
    _run(*common, "--max-steps", "3")  # resumes at step 2 and runs one more
    lines = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    for r in lines:
        terms = {k: v for k, v in r.items() if "loss_" in k}
        assert r["loss"] == pytest.approx(sum(terms.values()), rel=1e-6)
        assert "det_loss_cls_0" in terms and "planning_loss_status_0" in terms
    out = tmp_path / "metrics.json"
    table = _run("sparsedrive_ros.tools.evaluate", "--checkpoint", str(work / "latest.pt"), "--data", str(data_root),
                 "--split", "all", "--out", str(out), "--device", "cpu", "--max-frames", "2")
    metrics = json.loads(out.read_text())
    assert metrics["num_frames"] == 2 and metrics["checkpoint"]["step"] == 3
    assert 0.0 <= metrics["detection"]["NDS"] <= 1.0 and "NDS" in table
    assert "planning" in metrics and "motion" in metrics


def test_evaluate_rejects_missing_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sparsedrive_ros.tools.evaluate", "--checkpoint",
                           str(tmp_path / "none.pt"), "--data", str(tmp_path), "--out", str(tmp_path / "m.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "does not exist" in proc.stderr


def test_sigterm_stops_after_the_step_with_a_checkpoint(data_root, tmp_path):
    """`timeout` or a pre-emption sends SIGTERM: the run ends cleanly and nothing trained is lost."""
    import os
    import signal
    import time

    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "sparsedrive_ros.tools.train", "--config", "micro", "--data", str(data_root),
           "--work-dir", str(work), "--device", "cpu", "--max-steps", "1000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = work / "log.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    ckpt = torch.load(work / "latest.pt", weights_only=True)
    assert ckpt["meta"]["step"] == steps[-1] >= 2 and steps == list(range(1, steps[-1] + 1))
    assert f"SIGTERM: stopped at step {steps[-1]}" in err
