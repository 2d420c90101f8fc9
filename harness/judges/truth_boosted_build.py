"""`embedded-truth-boosted`'s tree ensembles, fitted on first use into the results cache.

The first time the judge is used, one gradient-boosted ensemble per field (truthful, informative) is fitted to
TruthfulQA's human labels of the answers to the training questions (all but `heldout_questions`), and kept
under the cache keyed by what determines it: the feature set, the settings below and the library versions.
Right after fitting, the judge is validated on every labelled answer to the held-out questions and its per-field
record (the error rates a corrected rate rests on, harness/prevalence.py) is stored, tied to the file's hash.
Fitting is seeded and single-threaded in its randomness; the version is the file's hash all the same.
"""
from __future__ import annotations

import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness import progress
from harness.errors import HarnessError
from harness.hashing import hash_file, hash_json
from harness.judges import truth_boosted

# Trees: fixed size, no early stopping (sklearn's default holds out a random 10% above 10,000 rows).
TREES = {"max_iter": 300, "learning_rate": 0.05, "early_stopping": False, "random_state": 0}
MINUTES = 2  # embedding the answers and references, fitting and validating, about, on an idle 2-core CPU
# Which `validate` field and record head each fitted field is (the record's heads are the benchmark's score names).
KINDS = {"truthful": "truth", "informative": "info"}
RECORD_HEADS = {"truthful": "true", "informative": "informative"}


def settings() -> dict[str, Any]:
    import sklearn

    from benchmarks.truthfulqa_data import HELDOUT_FRACTION, HELDOUT_SEED
    from harness.embedding import EMBEDDER_NAME

    return {"features": truth_boosted.FEATURES, "trees": TREES, "embedder": EMBEDDER_NAME,
            "heldout_fraction": HELDOUT_FRACTION, "heldout_seed": HELDOUT_SEED, "sklearn": sklearn.__version__,
            "numpy": np.__version__}


def cached_model_path() -> Path:
    from harness.store import cache_root

    return cache_root() / "judges" / "embedded-truth-boosted" / hash_json(settings())[:16] / "model.pkl"


def training_answers(kind: str) -> tuple[list[Any], list[bool]]:
    """(labelled answers to the training questions, their labels) for `kind` "truth" or "info"."""
    from benchmarks.truthfulqa_data import heldout_questions, load_labelled_answers, load_truthfulqa

    known = {q.question for q in load_truthfulqa()[0]}
    labelled = [a for a in load_labelled_answers(kind) if a.question in known]
    held = heldout_questions([a.question for a in labelled])
    rows = [a for a in labelled if a.question not in held]
    return rows, [a.label for a in rows]


def fit(out: Path) -> dict[str, Any]:
    """Fits both fields' ensembles and writes them to `out`; returns the metadata."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from benchmarks.truthfulqa_data import load_truthfulqa

    started = time.time()
    by_question = {q.question: q for q in load_truthfulqa()[0]}
    training = {field: training_answers(KINDS[field]) for field in truth_boosted.FIELDS}
    # Both label files label the same answers: each distinct (question, answer) is embedded and featurised once.
    pairs = sorted({(a.question, a.answer) for rows, _ in training.values() for a in rows})
    progress.say(f"embedded-truth-boosted: features of {len(pairs)} labelled answers")
    refs = [by_question[question] for question, _ in pairs]
    features = truth_boosted.answer_features([q for q, _ in pairs], [a for _, a in pairs],
                                             [list(q.correct_answers) for q in refs],
                                             [list(q.incorrect_answers) for q in refs])
    row_of = {pair: i for i, pair in enumerate(pairs)}
    models, counts = {}, {}
    for field, (rows, labels) in training.items():
        progress.say(f"embedded-truth-boosted: fitting the {field} field")
        field_features = features[[row_of[(a.question, a.answer)] for a in rows]]
        models[field] = HistGradientBoostingClassifier(**TREES).fit(field_features, np.asarray(labels, dtype=bool))
        counts[field] = {"answers": len(rows), "questions": len({a.question for a in rows}),
                         "positive_rate": round(float(np.mean(labels)), 4)}
    meta = {**settings(), "training": counts, "fit_seconds": round(time.time() - started, 1),
            "labels": "TruthfulQA finetune_truth / finetune_info (human), training questions only"}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as handle:
        pickle.dump({"features": truth_boosted.FEATURES, "models": models, "meta": meta}, handle)
    return meta


def record_validation(model: Path) -> Path:
    """Validates the model at `model` on every labelled answer to the held-out questions and stores the
    per-field record where `load_validation` finds it for this file's version."""
    from benchmarks.truthfulqa import judge_agreement
    from harness.prevalence import HeadValidation, built_validation_path, write_validation

    judge = truth_boosted.BoostedTruthJudge(model_path=model)
    heads, agreement = [], {}
    for field in truth_boosted.FIELDS:
        progress.say(f"embedded-truth-boosted: validating the {field} field on the held-out questions")
        result = judge_agreement(judge, KINDS[field], n=None)
        counts = result["confusion"]
        heads.append(HeadValidation(
            judge=judge.name, version=judge.version, head=RECORD_HEADS[field],
            labels=f"truthfulqa-{KINDS[field]} (held-out questions, human labels)", true_positives=counts["tp"],
            positives=counts["tp"] + counts["fn"], true_negatives=counts["tn"], negatives=counts["tn"] + counts["fp"]))
        agreement[RECORD_HEADS[field]] = {"kappa": result["kappa"], "accuracy": result["accuracy"]["value"],
                                          "n": result["n"], "questions": result["n_questions"]}
    return write_validation(judge.name, heads, built_validation_path(judge.name, judge.version), agreement=agreement)


def build(out: Path | None = None) -> Path:
    """Fits into `out` (default: the cache) and records the held-out validation; returns the model's path."""
    from harness.datasources import UnavailableError

    out = out or cached_model_path()
    if not progress.is_quiet():  # on stderr: stdout may be a command's JSON
        print(f"embedded-truth-boosted: fitting its trees once to TruthfulQA's human labels and validating them on "
              f"the held-out questions (about {MINUTES} minutes on 2 CPU cores); kept in {out.parent}", file=sys.stderr)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        fit(partial)
        os.replace(partial, out)
    except UnavailableError as exc:
        raise HarnessError(f"embedded-truth-boosted is fitted on first use from the data mirror's TruthfulQA labels, "
                           f"and {exc}; or pass --judge-option model_path=FILE") from None
    finally:
        partial.unlink(missing_ok=True)
    record_validation(out)
    return out


def cached_model() -> Path:
    """The cached model, fitted (and validated) first if this cache has none; a build killed after fitting but
    before its validation record was written resumes at the validation (once the labels can be read: without
    them the judge works, and its rates go uncorrected)."""
    from harness.datasources import UnavailableError
    from harness.prevalence import built_validation_path

    path = cached_model_path()
    if not path.is_file():
        return build(path)
    if not built_validation_path(truth_boosted.BoostedTruthJudge.name, hash_file(path)[:12]).is_file():
        try:
            record_validation(path)
        except UnavailableError:
            pass
    return path
