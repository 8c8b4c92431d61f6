"""The audited report: what routing was worth over a window, with confidence intervals.

Pure statistics on rows the service reads for it (no HTTP, no SQL). Per decision: the model that
answered, its logged expected cost, the reference model's expected cost and predicted quality for
the same query, the audit draw (π, selected, the first gold grade) and the preference reward.

- Quality of the routed answers: PPI++ with the preference reward as the prediction and gold
  grades as the labels. Audits are drawn with unequal, logged probabilities π, so the gold rows
  are weighted by 1/π (`ppi.ppi_ipw_terms`); audits drawn but not graded yet are taken as missing
  at random within the set (the weights are scaled by selected / graded).
- Cost per query and the saving against the reference (its expected cost for the same queries
  minus the logged cost): means with normal intervals; the traffic is the sample.
- The reference's quality on the same queries is valued off-policy: its gold-graded answers are
  weighted by 1 / (routing probability × π), with the policy's predicted quality as the PPI++
  prediction (no preference exists for answers never given). Quality retained is the ratio of the
  two means, with a delta-method interval from the per-row terms of both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydantic import BaseModel, Field

from bandit_router.audit.ppi import Array, classical_mean_ci, ppi_ipw_terms

ALPHA = 0.05
NEAR = 0.25  # two grades "agree" when they are at most this far apart


@dataclass(frozen=True)
class ReportRow:
    model: str  # the model that answered (a proxy fallback's, if one answered instead)
    cost: float  # USD: the answering model's expected cost logged with the decision
    reference_cost: float  # USD: the reference model's expected cost for the same query
    reference_quality: float | None  # the policy's predicted quality of the reference (0-1)
    reference_probability: float  # the probability the decision gave the reference (0: none)
    audit_probability: float
    selected: bool  # drawn for an audit
    gold: float | None  # the first gold grade, once graded
    preference: float | None  # the mean preference reward, when there is feedback


class Estimate(BaseModel):
    estimate: float
    lower: float = Field(description="lower bound of the 95 % interval")
    upper: float = Field(description="upper bound of the 95 % interval")


class AuditedQuality(Estimate):
    gold_grades: int = Field(description="gold grades behind the estimate")
    lambda_hat: float = Field(description="PPI++ weight of the prediction (0: gold only)")


class ModelReport(BaseModel):
    model: str = Field(description="a model of the pool, or 'all'")
    decisions: int
    share: float = Field(description="share of the window's answered decisions")
    preference_mean: float | None = Field(description="mean preference reward, where given")
    quality: AuditedQuality | None
    quality_reason: str | None = Field(description="why quality is null")
    cost_per_query_usd: Estimate | None
    saving_per_query_usd: Estimate | None = Field(
        description="the reference's expected cost for the same queries minus the logged cost"
    )


class Agreement(BaseModel):
    """How two graders of the same answer agree (AUDIT_DOUBLE_GRADE_RATE)."""

    pairs: int
    mean_abs_difference: float | None
    share_within_0_25: float | None


class Report(BaseModel):
    since: datetime
    until: datetime
    reference: str | None = Field(description="the model savings are measured against")
    decisions: int = Field(description="answered decisions in the window")
    audits_selected: int
    audits_graded: int
    overall: ModelReport
    models: list[ModelReport]
    saving_total_usd: Estimate | None = Field(description="saving summed over the window")
    reference_quality: AuditedQuality | None = Field(
        description="the reference model's estimated quality on the same queries"
    )
    quality_retained: Estimate | None = Field(
        description="audited quality / the reference's estimated quality"
    )
    quality_retained_reason: str | None = Field(description="why quality_retained is null")
    agreement: Agreement
    computed_at: datetime


def build_report(
    rows: Sequence[ReportRow],
    *,
    reference: str | None,
    since: datetime,
    until: datetime,
    pairs: Sequence[tuple[float, float]],
    computed_at: datetime,
) -> Report:
    total = len(rows)
    by_model: dict[str, list[ReportRow]] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    ref_quality, retained, reason = reference_comparison(rows, reference)
    saving = saving_interval(rows) if reference else None
    return Report(
        since=since,
        until=until,
        reference=reference,
        decisions=total,
        audits_selected=sum(r.selected for r in rows),
        audits_graded=sum(r.gold is not None for r in rows),
        overall=model_report("all", rows, total, reference),
        models=[model_report(m, by_model[m], total, reference) for m in sorted(by_model)],
        saving_total_usd=_scaled(saving, total),
        reference_quality=ref_quality,
        quality_retained=retained,
        quality_retained_reason=reason,
        agreement=agreement(pairs),
        computed_at=computed_at,
    )


def model_report(
    name: str, rows: Sequence[ReportRow], total: int, reference: str | None
) -> ModelReport:
    quality, reason = routed_quality(rows)
    prefs = [r.preference for r in rows if r.preference is not None]
    return ModelReport(
        model=name,
        decisions=len(rows),
        share=len(rows) / total if total else 0.0,
        preference_mean=float(np.mean(prefs)) if prefs else None,
        quality=quality,
        quality_reason=reason,
        cost_per_query_usd=_mean_interval([r.cost for r in rows]),
        saving_per_query_usd=saving_interval(rows) if reference else None,
    )


# --- quality ------------------------------------------------------------------------------------


def routed_quality(rows: Sequence[ReportRow]) -> tuple[AuditedQuality | None, str | None]:
    graded = sum(r.gold is not None for r in rows)
    if graded < 2:
        return None, f"{graded} gold grade(s) in the window: at least 2 are needed"
    terms, lam = quality_terms(rows)
    return _quality(terms, lam, graded), None


def quality_terms(rows: Sequence[ReportRow]) -> tuple[Array, float]:
    """Per-row PPI++ terms whose mean is the audited quality of these rows' answers."""
    return ppi_ipw_terms(_golds(rows), preference_predictions(rows), audit_weights(rows))


def audit_weights(rows: Sequence[ReportRow]) -> Array:
    """1 / (π × the share of drawn audits graded so far) on graded rows, 0 elsewhere."""
    selected = sum(r.selected for r in rows)
    graded = sum(r.gold is not None for r in rows)
    completion = graded / selected if selected else 1.0
    return np.array(
        [
            1.0 / (r.audit_probability * completion)
            if r.gold is not None and r.audit_probability > 0
            else 0.0
            for r in rows
        ]
    )


def preference_predictions(rows: Sequence[ReportRow]) -> Array:
    """The preference reward; rows without feedback get the set's mean (a constant keeps the
    estimator unbiased: only how well f tracks gold changes the width)."""
    given = [r.preference for r in rows if r.preference is not None]
    fill = float(np.mean(given)) if given else 0.5
    return np.array([r.preference if r.preference is not None else fill for r in rows])


def _golds(rows: Sequence[ReportRow]) -> Array:
    return np.array([r.gold if r.gold is not None else 0.0 for r in rows])


def _quality(terms: Array, lam: float, graded: int) -> AuditedQuality:
    ci = classical_mean_ci(terms, ALPHA)
    return AuditedQuality(
        estimate=ci.estimate, lower=ci.lo, upper=ci.hi, gold_grades=graded, lambda_hat=lam
    )


# --- the reference model ------------------------------------------------------------------------


def reference_comparison(
    rows: Sequence[ReportRow], reference: str | None
) -> tuple[AuditedQuality | None, Estimate | None, str | None]:
    """(the reference's quality, quality retained, why retained is null) on the rows where the
    reference could have been chosen."""
    if reference is None:
        return None, None, "no reference model"
    rows = [r for r in rows if r.reference_probability > 0 and r.reference_quality is not None]
    ref_golds = sum(r.gold is not None and r.model == reference for r in rows)
    if ref_golds < 2:
        return (
            None,
            None,
            (
                f"{ref_golds} gold grade(s) of {reference}'s answers in the window: its quality "
                "cannot be estimated without at least 2"
            ),
        )
    ref_terms, ref_lam = reference_terms(rows, reference)
    routed_terms, _ = quality_terms(rows)
    return (
        _quality(ref_terms, ref_lam, ref_golds),
        ratio_interval(routed_terms, ref_terms),
        None,
    )


def reference_terms(rows: Sequence[ReportRow], reference: str) -> tuple[Array, float]:
    """Off-policy PPI++ terms for "every query answered by the reference"."""
    audit = audit_weights(rows)
    routing = np.array(
        [1.0 / r.reference_probability if r.model == reference else 0.0 for r in rows]
    )
    predicted = np.array([min(max(r.reference_quality or 0.0, 0.0), 1.0) for r in rows])
    return ppi_ipw_terms(_golds(rows), predicted, audit * routing)


def ratio_interval(numerator: Array, denominator: Array) -> Estimate | None:
    """mean(a) / mean(b) with a delta-method interval from the per-row terms."""
    mean_b = float(denominator.mean())
    if numerator.size < 2 or mean_b <= 0:
        return None
    ratio = float(numerator.mean()) / mean_b
    influence = (numerator - ratio * denominator) / mean_b
    ci = classical_mean_ci(influence, ALPHA)
    half = (ci.hi - ci.lo) / 2
    return Estimate(estimate=ratio, lower=ratio - half, upper=ratio + half)


# --- cost ---------------------------------------------------------------------------------------


def saving_interval(rows: Sequence[ReportRow]) -> Estimate | None:
    return _mean_interval([r.reference_cost - r.cost for r in rows])


def _mean_interval(values: Sequence[float]) -> Estimate | None:
    if len(values) < 2:
        return None
    ci = classical_mean_ci(values, ALPHA)
    return Estimate(estimate=ci.estimate, lower=ci.lo, upper=ci.hi)


def _scaled(per_query: Estimate | None, n: int) -> Estimate | None:
    if per_query is None:
        return None
    return Estimate(
        estimate=per_query.estimate * n, lower=per_query.lower * n, upper=per_query.upper * n
    )


# --- graders ------------------------------------------------------------------------------------


def agreement(pairs: Sequence[tuple[float, float]]) -> Agreement:
    if not pairs:
        return Agreement(pairs=0, mean_abs_difference=None, share_within_0_25=None)
    diffs = np.abs(np.array([a - b for a, b in pairs]))
    return Agreement(
        pairs=len(pairs),
        mean_abs_difference=float(diffs.mean()),
        share_within_0_25=float((diffs <= NEAR + 1e-12).mean()),
    )
