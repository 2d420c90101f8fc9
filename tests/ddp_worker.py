"""Run by tests/test_distributed.py alone and under a multi-process launcher: LoRA SFT and the SPIN loss on a
tiny model; the main process writes both loss curves to OUT/losses.json.

    python tests/ddp_worker.py MODEL_DIR OUT
"""
import json
import os
import sys
from pathlib import Path

import torch

from harness.models.hf import load_backend
from harness.train.lora import train_lora
from harness.train.preference import train_spin

torch.set_num_threads(1)  # two processes on two cores
model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
backend = load_backend(str(model_dir))
pairs = [(f"Question: What is item {i}?\nAnswer:", f" Item {i} is a thing, number {i}.") for i in range(10)]
sft = train_lora(backend, pairs, out / "sft", epochs=2, learning_rate=1e-2, rank=4, batch_size=4, max_seq_len=64,
                 seed=0)
triples = [(prompt, answer, " I do not know.") for prompt, answer in pairs[:6]]
spin = train_spin(backend, triples, out / "spin", beta=0.1, reference_adapter=None, init_adapter=None, epochs=2,
                  learning_rate=1e-2, rank=4, batch_size=4, max_seq_len=64, seed=0)
if int(os.environ.get("RANK", "0")) == 0:
    (out / "losses.json").write_text(json.dumps({"sft": sft.losses, "spin": spin.losses,
                                                  "world": int(os.environ.get("WORLD_SIZE", "1"))}))
