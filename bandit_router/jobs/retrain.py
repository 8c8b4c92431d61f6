"""The periodic retraining job: bias-corrected labels → a candidate policy → off-policy evaluation
→ promotion only when the candidate is better with confidence.

Training set (from the decision log of the last RETRAIN_WINDOW_DAYS): gold where audited,
bias-corrected preference feedback elsewhere (BIAS_METHOD; the bias model is fit on the audits),
decisions whose window closed without feedback per NO_FEEDBACK. The candidate starts from the
policy the service started from (the newest warm-start or cold version) so that updates learned
from raw, biased feedback do not linger, and learns the older (1 − HOLDOUT) share of events. The
newer share is held out: candidate, active policy, uniform and best-single-model are valued on it
with IPS / SNIPS / DR; the candidate becomes active only when PROMOTION_RULE says it beats the
active policy. Everything is published in one transaction at the end, so a failed or killed job
leaves the active policy untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from bandit_router.audit import ope
from bandit_router.audit.ppi import bias_intervals_by_model, bias_moved
from bandit_router.config import Settings
from bandit_router.jobs.rewards import aggregate
from bandit_router.policy.learner import QualityModel
from bandit_router.policy.service import publish_policy
from bandit_router.store import keys as edge_store
from bandit_router.store import repository as repo
from bandit_router.store.models import PolicyVersion, utcnow

log = logging.getLogger(__name__)


@dataclass
class Log:
    """The learning log as arrays; row i is one event (a decision, or an offline gold label)."""

    X: np.ndarray
    k: np.ndarray  # chosen model index into `models`
    models: list[str]
    pref: np.ndarray  # aggregated preference reward, NaN if none
    gold: np.ndarray  # gold grade, NaN if not audited
    propensity: np.ndarray  # audit probability π
    probability: np.ndarray  # routing probability of the chosen model (1 for offline gold)
    candidates: list[list[dict[str, Any]]]  # per event: the candidates as logged ([] offline)
    lam: np.ndarray
    output_tokens: np.ndarray  # the answer's length (proxy-measured or reported), NaN if unknown

    def answer_length_features(self) -> np.ndarray | None:
        """What the bias model may use besides the query: a judge favours longer answers, so
        log answer length, with a column saying whether it is known (0 stands in when not).
        None when no event has a known length."""
        known = np.isfinite(self.output_tokens)
        if not known.any():
            return None
        log_len = np.log1p(np.where(known, self.output_tokens, 0.0))
        return np.column_stack([log_len, known.astype(float)])


def load_log(engine: Engine, settings: Settings) -> Log:
    since = utcnow() - timedelta(days=settings.retrain_window_days)
    with engine.connect() as conn:
        events = repo.logged_events(conn, since)
        feedback = repo.feedback_for(conn, [e["id"] for e in events])
        lengths = edge_store.output_tokens(conn, [e["id"] for e in events])
        offline = repo.offline_gold(conn)
        pool = [m["name"] for m in repo.list_models(conn)]
    models = sorted(set(pool) | {e["chosen_model"] for e in events} | {g["model"] for g in offline})
    col = {m: i for i, m in enumerate(models)}
    rows = [
        (*_event_row(e, feedback[e["id"]], settings, col), _length(e["id"], lengths, feedback))
        for e in events
    ]
    # Offline gold is unpaired gold: it was not drawn with a logged π; its share of all gold-
    # carrying rows stands in as the propensity, which the unpaired learners need.
    share = len(offline) / max(1, len(offline) + len(events))
    rows += [
        (
            np.frombuffer(g["embedding"], dtype=np.float32),
            col[g["model"]],
            np.nan,
            g["score"],
            share,
            1.0,
            [],
            0.0,
            np.nan,
        )
        for g in offline
    ]
    if not rows:
        return Log(
            np.zeros((0, 1), np.float32),
            np.zeros(0, int),
            models,
            *(np.zeros(0),) * 4,
            [],
            np.zeros(0),
            np.zeros(0),
        )
    X, k, pref, gold, prop, prob, cands, lam, tokens = zip(*rows, strict=True)
    return Log(
        np.stack(X),
        np.array(k),
        models,
        np.array(pref, float),
        np.array(gold, float),
        np.array(prop, float),
        np.array(prob, float),
        list(cands),
        np.array(lam, float),
        np.array(tokens, float),
    )


def _length(
    decision_id: str, proxied: dict[str, int], feedback: dict[str, list[dict[str, Any]]]
) -> float:
    """The answer's length: what the proxy measured, else the newest one a feedback reported."""
    if decision_id in proxied:
        return float(proxied[decision_id])
    told = [f["output_tokens"] for f in feedback[decision_id] if f["output_tokens"] is not None]
    return float(told[-1]) if told else np.nan


def _event_row(
    e: dict[str, Any], items: list[dict[str, Any]], settings: Settings, col: dict[str, int]
) -> tuple[Any, ...]:
    if items:
        pref = aggregate([f["reward"] for f in items], settings.reward_aggregation)
    elif settings.no_feedback == "default":
        pref = settings.default_reward
    else:
        pref = np.nan
    gold = np.nan if e["gold"] is None else float(e["gold"])
    return (
        np.frombuffer(e["embedding"], dtype=np.float32),
        col[e["chosen_model"]],
        pref,
        gold,
        float(e["audit_probability"]),
        float(e["probability"]),
        e["candidates"],
        e["lam"],
    )


def base_policy(engine: Engine) -> dict[str, Any]:
    """The newest warm-start or cold version: what the service started from."""
    with engine.connect() as conn:
        version = conn.execute(
            select(PolicyVersion.id)
            .where(PolicyVersion.source.in_(("warm_start", "cold")))
            .order_by(PolicyVersion.id.desc())
            .limit(1)
        ).scalar()
        row = repo.get_policy(conn, int(version), with_bytes=True) if version else None
    if row is None:
        raise RuntimeError("no warm-start or cold policy to retrain from")
    return row


def train_candidate(
    base: dict[str, Any], lg: Log, labels: np.ndarray, rows: np.ndarray
) -> tuple[bytes, dict[str, int]]:
    model = QualityModel(base["vw_args"], base["model_bytes"])
    counts = dict(base["model_counts"] or {})
    try:
        for i in rows:
            if not np.isfinite(labels[i]):
                continue
            names = [c["model"] for c in lg.candidates[i]] or lg.models
            chosen = names.index(lg.models[lg.k[i]])
            model.learn(lg.X[i], names, chosen, float(labels[i]), float(lg.probability[i]))
            counts[names[chosen]] = counts.get(names[chosen], 0) + 1
        return model.to_bytes(), counts
    finally:
        model.close()


def _greedy(model: QualityModel, lg: Log, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-hot greedy choice and predicted objective per column, for the logged candidate set."""
    K = len(lg.models)
    pi = np.zeros((len(rows), K))
    q = np.zeros((len(rows), K))
    for r, i in enumerate(rows):
        cands = lg.candidates[i]
        names = [c["model"] for c in cands]
        cost = np.array([c["cost_norm"] for c in cands])
        score = model.predict(lg.X[i], names) - lg.lam[i] * cost
        cols = [lg.models.index(n) for n in names]
        q[r, cols] = score
        pi[r, cols[int(np.argmax(score))]] = 1.0
    return pi, q


def _fixed_policies(
    lg: Log, rows: np.ndarray, labels: np.ndarray, train: np.ndarray
) -> dict[str, np.ndarray]:
    K = len(lg.models)
    uniform = np.zeros((len(rows), K))
    means = np.array(
        [
            np.nanmean(np.where(lg.k[train] == j, labels[train], np.nan))
            if (lg.k[train] == j).any()
            else -np.inf
            for j in range(K)
        ]
    )
    best = np.zeros((len(rows), K))
    for r, i in enumerate(rows):
        cols = [lg.models.index(c["model"]) for c in lg.candidates[i]]
        uniform[r, cols] = 1.0 / len(cols)
        best[r, max(cols, key=lambda j: means[j])] = 1.0
    return {"uniform": uniform, "best_single_model": best}


def evaluate(
    lg: Log,
    labels: np.ndarray,
    train: np.ndarray,
    hold: np.ndarray,
    candidate: QualityModel,
    active: QualityModel,
    settings: Settings,
) -> dict[str, Any]:
    a = lg.k[hold]
    p = lg.probability[hold]
    chosen_cost = np.array(
        [
            next(c["cost_norm"] for c in lg.candidates[i] if c["model"] == lg.models[lg.k[i]])
            for i in hold
        ]
    )
    r = labels[hold] - lg.lam[hold] * chosen_cost
    cand_pi, cand_q = _greedy(candidate, lg, hold)
    act_pi, _ = _greedy(active, lg, hold)
    cmp = ope.compare(cand_pi, act_pi, a, p, r, q_hat=cand_q, rule=settings.promotion_rule)
    report: dict[str, Any] = {
        "holdout_events": int(len(hold)),
        "estimator": cmp.estimator,
        "rule": cmp.rule,
        "promote": bool(cmp.promote),
        "candidate": _est(cmp.candidate),
        "active": _est(cmp.baseline),
        "difference": _est(cmp.difference),
        "logging_policy_mean_reward": float(np.mean(r)),
    }
    for name, pi in _fixed_policies(lg, hold, labels, train).items():
        report[name] = {
            "snips": _est(ope.snips(a, p, r, pi)),
            "dr": _est(ope.dr(a, p, r, pi, cand_q)),
        }
    return report


def _est(e: ope.Estimate) -> dict[str, float]:
    return {"value": e.value, "lo": e.lo, "hi": e.hi, "ess": e.ess}


def bias_report(engine: Engine, lg: Log) -> dict[str, Any]:
    """Per-model mean bias (gold − preference) with PPI++ intervals, and an alert when an
    estimate left the interval of the previous retraining run."""
    both = np.isfinite(lg.gold) & np.isfinite(lg.pref)
    only_pref = ~np.isfinite(lg.gold) & np.isfinite(lg.pref)
    intervals = bias_intervals_by_model(
        lg.k[both], lg.gold[both], lg.pref[both], lg.k[only_pref], lg.pref[only_pref]
    )
    with engine.connect() as conn:
        previous = repo.latest_bias(conn)
    out = {}
    for j, iv in intervals.items():
        name = lg.models[j]
        prev = previous.get(name)
        moved = bool(prev and bias_moved((prev["lo"], prev["hi"]), iv.estimate))
        out[name] = {
            "estimate": iv.estimate,
            "lo": iv.lo,
            "hi": iv.hi,
            "n_gold": iv.n_gold,
            "n_pref": iv.n_pref,
            "alert": moved,
        }
    return out


def run_retrain(engine: Engine, settings: Settings) -> dict[str, Any]:
    from bandit_router.audit.training import corrected_labels

    with engine.connect() as conn:
        active = repo.active_policy(conn)
    if active is None:
        raise RuntimeError("no active policy")
    lg = load_log(engine, settings)
    n = len(lg.k)
    if n < settings.retrain_min_events:
        return {"events": n, "skipped": f"fewer than {settings.retrain_min_events} events"}
    length = lg.answer_length_features()
    labels, info = corrected_labels(
        lg.X,
        lg.k,
        len(lg.models),
        lg.pref,
        lg.gold,
        lg.propensity,
        settings.bias_method,
        event_features=length,
    )
    info["answer_length_feature"] = length is not None
    # Hold out the newest decisions (offline gold rows have no decision to evaluate on).
    decisions = np.flatnonzero([bool(c) for c in lg.candidates])
    cut = int(len(decisions) * (1 - settings.promotion_holdout_fraction))
    hold = decisions[cut:]
    train = np.setdiff1d(np.arange(n), hold)
    hold = hold[np.isfinite(labels[hold])]
    base = base_policy(engine)
    blob, counts = train_candidate(base, lg, labels, train)
    candidate = QualityModel(active["vw_args"], blob)
    current = QualityModel(active["vw_args"], active["model_bytes"])
    try:
        evaluation = evaluate(lg, labels, train, hold, candidate, current, settings)
    finally:
        candidate.close()
        current.close()
    metrics = {
        "events": n,
        "train_events": int(len(train)),
        "bias_method": settings.bias_method,
        "labels": _jsonable(info),
        "ope": evaluation,
        "bias": bias_report(engine, lg),
    }
    version = publish_policy(
        engine,
        trained_from_active=active["id"],
        activate=evaluation["promote"],
        vw_args=base["vw_args"],
        model_bytes=blob,
        model_counts=counts,
        metrics=metrics,
        source="retrain",
        parent_id=base["id"],
    )
    log.info(
        "retrain: candidate %s %s",
        version,
        "promoted" if evaluation["promote"] else "kept inactive",
    )
    return {
        **metrics,
        "candidate": version,
        "promoted": evaluation["promote"],
        "active_before": active["id"],
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 64 else f"array{obj.shape}"
    if isinstance(obj, int | float | str | bool) or obj is None:
        return obj
    return repr(obj)
