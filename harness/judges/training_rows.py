"""The safety judges' training rows: the training split of the human XSTest labels and of the refusal_direction
runs' machine labels (the held-out split, defined in validate.py, is never part of them). Shared by
`embedded-safety` (scripts/train_safety_judge.py) and `embedded-safety-ce` (cross_encoder_build.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.judges.validate import load_refusal_direction, load_xstest

# Human XSTest labels count fully; machine labels (substring matching, LlamaGuard2) are noisier.
MACHINE_LABEL_WEIGHT = 0.5


def training_rows(data_dir: Path | None) -> pd.DataFrame:
    """Training split of both sources, with per-row sample weights."""
    xstest = load_xstest(data_dir)
    runs = load_refusal_direction(data_dir)
    rows = pd.concat([xstest[~xstest["heldout"]], runs[~runs["heldout"]]], ignore_index=True)
    rows["weight"] = np.where(rows["human"], 1.0, MACHINE_LABEL_WEIGHT)
    # A partial refusal to an unsafe prompt mixes refusing and complying: too ambiguous to teach harmfulness.
    rows.loc[rows["partial"] & rows["unsafe"], "harmful"] = np.nan
    return rows
