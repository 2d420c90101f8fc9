"""Rates corrected for the judge's errors.

A judged rate (the share of responses a judge calls harmful, say) is the true prevalence seen through an
imperfect judge: observed = sensitivity * true + (1 - specificity) * (1 - true). Given the judge head's
sensitivity and specificity on human labels it never trained on, Rogan & Gladen (1978) invert this:

    corrected = (observed + specificity - 1) / (sensitivity + specificity - 1),   clipped to [0, 1].

Its 95% interval must carry three uncertainties: the run's own sample (k of n) and the validation set's
estimates of sensitivity (tp of the positives) and specificity (tn of the negatives). Sensitivity and
specificity are drawn from their Jeffreys posteriors, Beta(x + 1/2, n - x + 1/2); the run's rate interval
(Wilson with the Brown-Cai-DasGupta fix, harness/stats.py) is mapped through the estimator on every draw,
and the 2.5% quantile of the mapped lower ends and the 97.5% quantile of the mapped upper ends are the
interval. A simulation in tests/test_prevalence.py checks that it covers the true prevalence at least 93% of
the time at the sizes the presets use (it is conservative: about 97-100%).

Assumptions, stated with every corrected number (docs/judges.md): the judge's sensitivity and specificity on
the run's responses equal those measured on the validation set (responses of other models to other prompts:
a distribution shift the correction cannot see), and the human labels are the truth. A head no better than
chance (sensitivity + specificity <= 1) gives no correction.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.stats import rate_interval

VALIDATION_DIR = Path(__file__).resolve().parent / "judges" / "validation"
DRAWS = 4000


@dataclass(frozen=True)
class HeadValidation:
    """One judge head's confusion counts against human labels it never trained on."""

    judge: str
    version: str
    head: str  # the verdict field: "harmful", "refusal", ...
    labels: str  # the labelled set, e.g. "xstest (held-out split, human labels)"
    true_positives: int
    positives: int
    true_negatives: int
    negatives: int

    @property
    def sensitivity(self) -> float:
        return self.true_positives / self.positives

    @property
    def specificity(self) -> float:
        return self.true_negatives / self.negatives

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sensitivity": round(self.sensitivity, 4), "specificity": round(self.specificity, 4)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadValidation":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def rogan_gladen(observed: float, sensitivity: float, specificity: float) -> float | None:
    """The prevalence that explains `observed` under the judge's error rates; None for a head no better than
    chance."""
    youden = sensitivity + specificity - 1
    if youden <= 0:
        return None
    return float(min(1.0, max(0.0, (observed + specificity - 1) / youden)))


def corrected_rate(positives: int, n: int, head: HeadValidation, seed: int = 0,
                   draws: int = DRAWS) -> dict[str, Any] | None:
    """{value, ci95, n, judge, head, labels, sensitivity, specificity} for k = `positives` of n judged items;
    None when the head cannot correct (no validation counts, or no better than chance)."""
    if n <= 0 or head.positives <= 0 or head.negatives <= 0:
        return None
    value = rogan_gladen(positives / n, head.sensitivity, head.specificity)
    if value is None:
        return None
    rng = np.random.default_rng(seed)
    sensitivity = rng.beta(head.true_positives + 0.5, head.positives - head.true_positives + 0.5, draws)
    specificity = rng.beta(head.true_negatives + 0.5, head.negatives - head.true_negatives + 0.5, draws)
    youden = sensitivity + specificity - 1
    usable = youden > 0
    if usable.mean() < 0.975:  # the head is too often no better than chance: the prevalence is not identified
        lo, hi = 0.0, 1.0
    else:
        # The corrected rate rises with the observed one, so the run's own interval (rate_interval) maps to
        # the corrected scale through every draw of the error rates; the outer quantiles of the mapped ends
        # bound both uncertainties (conservative: each part is a 95% interval).
        low_obs, high_obs = rate_interval(positives, n)
        sp, j = specificity[usable], youden[usable]
        lo = float(np.quantile(np.clip((low_obs + sp - 1) / j, 0.0, 1.0), 0.025))
        hi = float(np.quantile(np.clip((high_obs + sp - 1) / j, 0.0, 1.0), 0.975))
    return {"value": value, "ci95": [min(lo, value), max(hi, value)], "n": n, "judge": head.judge,
            "head": head.head, "labels": head.labels, "sensitivity": round(head.sensitivity, 4),
            "specificity": round(head.specificity, 4), "method": "rogan-gladen"}


def validation_path(judge: str) -> Path:
    """A shipped judge's record (its weights are in the package, so is the record)."""
    return VALIDATION_DIR / f"{judge}.json"


def built_validation_path(judge: str, version: str) -> Path:
    """The record of a judge built on first use (embedded-safety-ce): in the results cache, as its weights are."""
    from harness.store import cache_root

    return cache_root() / "judges" / "validation" / f"{judge}-{version}.json"


def load_validation(judge: str, version: str | None) -> dict[str, HeadValidation]:
    """head -> its validation, for a judge whose shipped or built record matches `version` (another version of
    the judge, or no record, gives none: a correction never rests on someone else's error rates)."""
    paths = [validation_path(judge)] + ([built_validation_path(judge, version)] if version else [])
    for path in paths:
        heads = {name: head for name, head in read_validation(path).items() if head.version == version}
        if heads:
            return heads
    return {}


def read_validation(path: Path) -> dict[str, HeadValidation]:
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return {name: HeadValidation.from_dict(data) for name, data in record["heads"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_validation(judge: str, heads: list[HeadValidation], path: Path | None = None,
                     agreement: dict | None = None) -> Path:
    """The judge's validation record (written by `harness judge validate --record`, or by a judge's build);
    `agreement`: the validation's kappas and accuracies, kept beside the counts."""
    from harness.fileio import write_json_atomic

    path = path or validation_path(judge)
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"judge": judge}
    record["heads"] = {h.head: h.to_dict() for h in heads}
    if agreement is not None:
        record["agreement"] = agreement
    write_json_atomic(path, record)
    return path
