"""Data-parallel training (harness/train/distributed.py): two processes with the gloo backend on CPU train the
same loss curves as one process with the same batch, for LoRA SFT and the SPIN loss, and write the same
adapter (tests/ddp_worker.py, launched alone and under torchrun)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tiny_model import make_tiny_model

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: list[str]) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    result = subprocess.run(command, capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_train_the_same_loss_curves_and_adapters_as_one(tmp_path):
    model = make_tiny_model(tmp_path / "tiny")
    run([sys.executable, str(WORKER), str(model), str(tmp_path / "one")])
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(free_port()), str(WORKER), str(model), str(tmp_path / "two")])
    one = json.loads((tmp_path / "one" / "losses.json").read_text())
    two = json.loads((tmp_path / "two" / "losses.json").read_text())
    assert one["world"] == 1 and two["world"] == 2
    assert len(one["sft"]) == len(two["sft"]) == 6 and len(one["spin"]) == len(two["spin"]) == 4
    assert two["sft"] == pytest.approx(one["sft"], rel=1e-5)
    assert two["spin"] == pytest.approx(one["spin"], rel=1e-4, abs=1e-6)
    assert one["sft"][-1] < one["sft"][0]  # it learned something, so equal curves are not two flat lines
    for stage in ("sft", "spin"):
        alone = load_file(tmp_path / "one" / stage / "adapter_model.safetensors")
        together = load_file(tmp_path / "two" / stage / "adapter_model.safetensors")
        assert alone.keys() == together.keys()
        for name, tensor in alone.items():
            assert together[name].allclose(tensor, atol=1e-5), (stage, name)
