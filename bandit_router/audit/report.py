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

Streamed: the rows arrive as an iterable and are read once, BATCH at a time, into the moments of
ten per-row quantities (`FEATURES`: count, mean and centred co-moment matrix, merged by Chan's
update) per model, overall and on the reference's rows, plus exact counts. Every term above is a
linear combination of those quantities whose coefficients (1/completion, the preference fill,
λ̂) are known only at the end, so its mean and variance are taken from the moments then: memory
does not grow with the window. One pass, not two: the source is a paged query, and a second pass
would read the window twice and could see grades and feedback that arrived in between.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from bandit_router.audit.ppi import Array, normal_interval, ppi_ipw_lambda

ALPHA = 0.05
NEAR = 0.25  # two grades "agree" when they are at most this far apart
BATCH = 4096  # rows held at once: the report's memory is bounded by this, not by the window

# The per-row quantities whose moments carry the report. With u = 1/π on a graded row (0
# elsewhere), p the preference (0 without), r = 1/(the reference's routing probability) on the
# reference's answers (0 elsewhere) and q its clipped predicted quality:
(
    COST,  # the logged cost
    SAVING,  # the reference's cost minus the logged cost
    GOLD_IPW,  # u·gold
    PREF,  # p
    NO_PREF,  # 1 without a preference (the rows the fill goes to)
    PREF_IPW,  # u·p
    NO_PREF_IPW,  # u·(1 without a preference)
    REF_GOLD_IPW,  # u·r·gold
    REF_PRED,  # q
    REF_PRED_IPW,  # u·r·q
) = range(10)
FEATURES = 10
# Counted exactly, as integers.
SELECTED, GRADED, HAS_PREF, REF_GRADED = range(4)
FLAGS = 4


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
    rows: Iterable[ReportRow],
    *,
    reference: str | None,
    since: datetime,
    until: datetime,
    pairs: Sequence[tuple[float, float]],
    computed_at: datetime,
) -> Report:
    """The report over `rows`, read once and never held (any iterable: a generator will do)."""
    window = WindowMoments(reference).fit(rows)
    overall, total = window.overall_, window.overall_.n
    ref_quality, retained, reason = reference_comparison(window.reference_rows_, reference)
    saving = _mean_interval(overall, SAVING) if reference else None
    return Report(
        since=since,
        until=until,
        reference=reference,
        decisions=total,
        audits_selected=overall.selected,
        audits_graded=overall.graded,
        overall=model_report("all", overall, total, reference),
        models=[
            model_report(m, window.models_[m], total, reference) for m in sorted(window.models_)
        ],
        saving_total_usd=_scaled(saving, total),
        reference_quality=ref_quality,
        quality_retained=retained,
        quality_retained_reason=reason,
        agreement=agreement(pairs),
        computed_at=computed_at,
    )


def model_report(name: str, rows: RowSet, total: int, reference: str | None) -> ModelReport:
    quality, reason = routed_quality(rows)
    return ModelReport(
        model=name,
        decisions=rows.n,
        share=rows.n / total if total else 0.0,
        preference_mean=rows.preference_mean,
        quality=quality,
        quality_reason=reason,
        cost_per_query_usd=_mean_interval(rows, COST),
        saving_per_query_usd=_mean_interval(rows, SAVING) if reference else None,
    )


# --- moments ------------------------------------------------------------------------------------


class Moments:
    """Count, mean and centred co-moment matrix of row vectors, fitted batch by batch.

    Batches merge by Chan, Golub & LeVeque's pairwise update: no Σx² − n·mean² is ever formed, so
    the (co)variances are as exact as numpy's two-pass ones over the whole window. A fresh
    instance is the fit of no rows.
    """

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.n_samples_seen_ = 0
        self.mean_: Array = np.zeros(n_features)
        self.comoment_: Array = np.zeros((n_features, n_features))

    def partial_fit(self, X: Array) -> Moments:
        k = X.shape[0]
        if k == 0:
            return self
        mean = X.mean(axis=0)
        centred = X - mean
        n = self.n_samples_seen_ + k
        delta = mean - self.mean_
        self.comoment_ += centred.T @ centred + np.outer(delta, delta) * (
            self.n_samples_seen_ * k / n
        )
        self.mean_ += delta * (k / n)
        self.n_samples_seen_ = n
        return self

    def mean(self, coef: Array) -> float:
        """Mean over the rows of the per-row term coef · x."""
        return float(coef @ self.mean_)

    def covariance(self, a: Array, b: Array) -> float:
        """Sample covariance (ddof=1) of the per-row terms a · x and b · x."""
        if self.n_samples_seen_ < 2:
            return 0.0
        return float(a @ self.comoment_ @ b) / (self.n_samples_seen_ - 1)


class RowSet:
    """What the report needs of one set of rows (a model's, all, the reference's): the moments
    of FEATURES and the FLAGS counted."""

    def __init__(self) -> None:
        self.moments_ = Moments(FEATURES)
        self.counts_ = np.zeros(FLAGS, dtype=np.int64)

    def partial_fit(self, values: Array, flags: NDArray[np.int64]) -> RowSet:
        self.moments_.partial_fit(values)
        self.counts_ += flags.sum(axis=0)
        return self

    @property
    def n(self) -> int:
        return self.moments_.n_samples_seen_

    @property
    def selected(self) -> int:
        return int(self.counts_[SELECTED])

    @property
    def graded(self) -> int:
        return int(self.counts_[GRADED])

    @property
    def completion(self) -> float:
        """The share of drawn audits graded so far: ungraded ones are missing at random."""
        return self.graded / self.selected if self.selected else 1.0

    @property
    def preference_mean(self) -> float | None:
        given = int(self.counts_[HAS_PREF])
        return float(self.moments_.mean_[PREF] * self.n / given) if given else None

    @property
    def fill(self) -> float:
        """The prediction of a row without feedback: the set's mean preference (a constant keeps
        the estimator unbiased: only how well f tracks gold changes the width)."""
        mean = self.preference_mean
        return 0.5 if mean is None else mean


class WindowMoments:
    """The window's RowSets, fitted from the rows BATCH at a time: overall, per model, and on the
    rows where the reference could have been chosen (`reference_rows_`)."""

    def __init__(self, reference: str | None, batch_size: int = BATCH) -> None:
        self.reference = reference
        self.batch_size = batch_size
        self.overall_ = RowSet()
        self.models_: dict[str, RowSet] = {}
        self.reference_rows_ = RowSet()

    def fit(self, rows: Iterable[ReportRow]) -> WindowMoments:
        source = iter(rows)
        while batch := list(islice(source, self.batch_size)):
            self.partial_fit(batch)
        return self

    def partial_fit(self, rows: Sequence[ReportRow]) -> WindowMoments:
        models, values, flags, usable = _features(rows, self.reference)
        self.overall_.partial_fit(values, flags)
        for model in np.unique(models):
            mine = models == model
            self.models_.setdefault(str(model), RowSet()).partial_fit(values[mine], flags[mine])
        self.reference_rows_.partial_fit(values[usable], flags[usable])
        return self


def _features(
    rows: Sequence[ReportRow], reference: str | None
) -> tuple[NDArray[np.str_], Array, NDArray[np.int64], NDArray[np.bool_]]:
    """(models, FEATURES, FLAGS, usable by the reference comparison) of a batch of rows."""
    nan = float("nan")  # None as NaN: the batch converts to one array, then vector operations
    raw = np.array(
        [
            (
                r.cost,
                r.reference_cost,
                nan if r.reference_quality is None else r.reference_quality,
                r.reference_probability,
                r.audit_probability,
                nan if r.gold is None else r.gold,
                nan if r.preference is None else r.preference,
                r.selected,
            )
            for r in rows
        ],
        dtype=np.float64,
    ).reshape(-1, 8)
    cost, ref_cost, ref_quality, ref_prob, audit_prob, gold, pref, selected = raw.T
    models = np.array([r.model for r in rows], dtype=np.str_)
    graded, has_pref = ~np.isnan(gold), ~np.isnan(pref)
    is_ref = models == reference if reference is not None else np.zeros(len(rows), dtype=bool)
    u = _inverse(audit_prob, graded)
    ur = u * _inverse(ref_prob, is_ref)
    y, p = np.nan_to_num(gold), np.nan_to_num(pref)
    q = np.clip(np.nan_to_num(ref_quality), 0.0, 1.0)
    no_pref = (~has_pref).astype(np.float64)
    values = np.column_stack(
        [cost, ref_cost - cost, u * y, p, no_pref, u * p, u * no_pref, ur * y, q, ur * q]
    )
    flags = np.column_stack([selected > 0, graded, has_pref, graded & is_ref]).astype(np.int64)
    return models, values, flags, (ref_prob > 0) & ~np.isnan(ref_quality)


def _inverse(probability: Array, where: NDArray[np.bool_]) -> Array:
    """1/probability where asked and positive, else 0 (a row drawn with probability 0 counts
    for nothing)."""
    return np.divide(
        1.0, probability, out=np.zeros_like(probability), where=where & (probability > 0)
    )


def _coef(weights: dict[int, float]) -> Array:
    """A per-row term as its coefficients over FEATURES."""
    out = np.zeros(FEATURES)
    for feature, weight in weights.items():
        out[feature] = weight
    return out


# --- quality ------------------------------------------------------------------------------------


def routed_quality(rows: RowSet) -> tuple[AuditedQuality | None, str | None]:
    graded = rows.graded
    if graded < 2:
        return None, f"{graded} gold grade(s) in the window: at least 2 are needed"
    terms, lam = quality_terms(rows)
    return _quality(rows, terms, lam, graded), None


def quality_terms(rows: RowSet) -> tuple[Array, float]:
    """The PPI++ term (as coefficients) whose mean is the audited quality of these rows' answers:
    y = gold, f = the preference (the fill without one), w = u / completion."""
    c, fill = rows.completion, rows.fill
    labelled = _coef({GOLD_IPW: 1 / c})
    rest = _coef({PREF: 1, NO_PREF: fill, PREF_IPW: -1 / c, NO_PREF_IPW: -fill / c})  # (1 − w)·f
    return ipw_terms(rows.moments_, labelled, rest)


def ipw_terms(moments: Moments, labelled: Array, rest: Array) -> tuple[Array, float]:
    """`ppi.ppi_ipw_terms` on moments: the coefficients of φ = wy + λ̂·(1 − w)f, and λ̂."""
    lam = ppi_ipw_lambda(moments.covariance(labelled, rest), moments.covariance(rest, rest))
    return labelled + lam * rest, lam


def _quality(rows: RowSet, terms: Array, lam: float, graded: int) -> AuditedQuality:
    ci = _interval(rows.moments_, terms)
    return AuditedQuality(
        estimate=ci.estimate, lower=ci.lower, upper=ci.upper, gold_grades=graded, lambda_hat=lam
    )


# --- the reference model ------------------------------------------------------------------------


def reference_comparison(
    rows: RowSet, reference: str | None
) -> tuple[AuditedQuality | None, Estimate | None, str | None]:
    """(the reference's quality, quality retained, why retained is null) on the rows where the
    reference could have been chosen."""
    if reference is None:
        return None, None, "no reference model"
    ref_golds = int(rows.counts_[REF_GRADED])
    if ref_golds < 2:
        return (
            None,
            None,
            (
                f"{ref_golds} gold grade(s) of {reference}'s answers in the window: its quality "
                "cannot be estimated without at least 2"
            ),
        )
    ref_terms, ref_lam = reference_terms(rows)
    routed_terms, _ = quality_terms(rows)
    return (
        _quality(rows, ref_terms, ref_lam, ref_golds),
        ratio_interval(rows.moments_, routed_terms, ref_terms),
        None,
    )


def reference_terms(rows: RowSet) -> tuple[Array, float]:
    """Off-policy PPI++ term for "every query answered by the reference": w = u·r / completion,
    f = its predicted quality."""
    c = rows.completion
    return ipw_terms(
        rows.moments_, _coef({REF_GOLD_IPW: 1 / c}), _coef({REF_PRED: 1, REF_PRED_IPW: -1 / c})
    )


def ratio_interval(moments: Moments, numerator: Array, denominator: Array) -> Estimate | None:
    """mean(a) / mean(b) with a delta-method interval from the per-row terms."""
    mean_b = moments.mean(denominator)
    if moments.n_samples_seen_ < 2 or mean_b <= 0:
        return None
    ratio = moments.mean(numerator) / mean_b
    influence = (numerator - ratio * denominator) / mean_b
    ci = _interval(moments, influence)
    half = (ci.upper - ci.lower) / 2
    return Estimate(estimate=ratio, lower=ratio - half, upper=ratio + half)


# --- cost ---------------------------------------------------------------------------------------


def _mean_interval(rows: RowSet, feature: int) -> Estimate | None:
    if rows.n < 2:
        return None
    return _interval(rows.moments_, _coef({feature: 1.0}))


def _interval(moments: Moments, terms: Array) -> Estimate:
    """The mean of a per-row term with its normal interval (`ppi.classical_mean_ci`)."""
    variance = moments.covariance(terms, terms) / moments.n_samples_seen_
    ci = normal_interval(moments.mean(terms), variance, ALPHA)
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
