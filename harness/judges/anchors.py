"""Anchors for the judges page: how well known strong judges do on the same human-labelled sets.

- XSTest: GPT-4's own label of every completion ships in XSTest's files (`gpt4_label`, the classifier of
  Röttger et al.); it is scored here like any judge, on the same held-out split and with the same heads. A label
  GPT-4 did not give (it refused to classify a few completions) counts as unparsed.
- The pairwise sets: LLMBar's published evaluator results (princeton-nlp/LLMBar @ 900616b,
  Dataset/<set>/evaluators/GPT-4/<prompt>/statistics.json, each pair judged in both orders): GPT-4 with a
  plain prompt ("Vanilla_NoRules") and with LLMBar's best prompt ("Metrics_Reference"), on the whole set.
  Counts are correct presentations of all presentations (pairs x 2 orders), copied from those files.
- TruthfulQA: the mirror holds no other judge's verdicts on its labelled answers, so it has no anchor here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.judges.label_data import readable_labels
from harness.judges.validate_all import Agreement
from harness.stats import rate_interval

LLMBAR_SOURCE = "LLMBar @ 900616b, statistics.json"
# labelled set -> (evaluator, correct presentations, presentations), both orders of every pair of the set.
PUBLISHED_PAIRWISE: dict[str, tuple[tuple[str, int, int], ...]] = {
    "llmbar-natural": (("GPT-4, plain prompt", 187, 200), ("GPT-4, LLMBar's best prompt", 192, 200)),
    # Natural's sibling: the sum over GPTInst (92 pairs), GPTOut (47), Manual (46) and Neighbor (134).
    "llmbar-adversarial": (("GPT-4, plain prompt", 454, 638), ("GPT-4, LLMBar's best prompt", 539, 638)),
    "mtbench-human": (("GPT-4, plain prompt", 324, 400), ("GPT-4, LLMBar's best prompt", 324, 400)),
    "faireval": (("GPT-4, plain prompt", 96, 132), ("GPT-4, LLMBar's best prompt", 88, 132)),
    "llmeval2": (("GPT-4, plain prompt", 302, 400), ("GPT-4, LLMBar's best prompt", 301, 400)),
}
COMPLIANCE, REFUSALS = "1_full_compliance", ("2_full_refusal", "3_partial_refusal")


def pairwise_anchors(sets: tuple[str, ...]) -> list[tuple[Agreement, str]]:
    rows = []
    for labels in sets:
        for evaluator, correct, presentations in PUBLISHED_PAIRWISE.get(labels, ()):
            rows.append((Agreement(judge=evaluator, version="-", labels=labels, what="preference (both orders)",
                                   value=correct / presentations, ci95=rate_interval(correct, presentations),
                                   kappa=None, n=presentations // 2, unparsed=0), LLMBAR_SOURCE))
    return rows


def xstest_anchors(data_dir: Path | str | None) -> list[tuple[Agreement, str]]:
    """GPT-4's XSTest labels against the human ones on the held-out split, refusal and harmful heads."""
    from harness.judges.validate import agreement, heldout_rows

    with readable_labels("xstest"):
        rows = heldout_rows("xstest", data_dir)
    gpt4 = rows["gpt4_label"].astype(str)
    given = gpt4.isin((COMPLIANCE, *REFUSALS)).to_numpy()
    refusal = gpt4.isin(REFUSALS).to_numpy()
    harmful = (rows["unsafe"] & (gpt4 == COMPLIANCE)).to_numpy()
    harmful_rows = (rows["unsafe"] & ~rows["partial"] & rows["harmful"].notna()).to_numpy()
    out = []
    for head, predicted, on in (("refusal", refusal, np.ones(len(rows), bool)), ("harmful", harmful, harmful_rows)):
        scored = on & given
        stats = agreement(predicted[scored], rows[head].to_numpy(float)[scored] == 1.0)
        out.append((Agreement(judge="GPT-4 (XSTest's gpt4_label)", version="-", labels="xstest", what=head,
                              value=stats["accuracy"]["value"], ci95=tuple(stats["accuracy"]["ci95"]),
                              kappa=stats["kappa"], n=stats["n"], unparsed=int((on & ~given).sum())),
                    "XSTest's files, held-out split"))
    return out
