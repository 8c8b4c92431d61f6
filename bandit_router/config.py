"""Settings: every knob of the service, from BANDIT_ROUTER_* environment variables (or .env)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

RESOURCES = Path(__file__).resolve().parent / "resources"
ENV_PREFIX = "BANDIT_ROUTER_"
UPSTREAM_KEY_PREFIX = ENV_PREFIX + "UPSTREAM_KEY_"  # no setting is named like this
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
EXAMPLE_POOL = RESOURCES / "example_pool.yaml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    # Storage
    database_url: str = "sqlite:///./var/bandit-router.db"
    store_prompts: bool = False  # prompts are user data: only their hash is kept unless enabled

    # Model pool (YAML). Models in the file are added at start if missing; run-time admin edits win.
    pool_file: Path = EXAMPLE_POOL
    # Public routing data (read only, never copied into the project): where `build-starter`
    # reads it, beside the project as laid out here unless set.
    shared_data: Path = Path("../shared/data")

    # Embedding
    embedding_model: str | None = (
        None  # path to a sentence-transformers model; None = bundled MiniLM
    )
    embedding_cache_size: int = Field(default=10_000, ge=0)
    embedding_max_batch: int = Field(default=32, ge=1)
    # Queries waiting for the encoder beyond this get 503 + Retry-After: 128 is ~0.6 s of work at
    # int8 on one core (at 256, overloaded-but-accepted routes waited 1.4 s).
    embedding_max_queue: int = Field(default=128, ge=1)
    # onnx-int8: ~4.5 ms a query against ~9 ms (onnx, fp32) and ~17 ms (torch) on one core here,
    # at mean cosine 0.992 to fp32 and about the same routing quality (README, Encoder backends).
    embedding_backend: Literal["onnx-int8", "onnx", "torch"] = "onnx-int8"
    model_cache_dir: Path = Path("./var/models")  # ONNX files derived from the model on first use
    # 1: with 2 intra-op threads on 2 cores, one busy core turned a 20 ms encode into 200-500 ms.
    embedding_threads: int = Field(default=1, ge=1)
    embedding_workers: int = Field(default=1, ge=1, le=64)  # parallel encoders, each one core
    chars_per_token: float = Field(default=4.0, gt=0)  # input-token estimate for the cost model

    # Policy and exploration
    # -l 0.05: at VW's default 0.5, online bandit updates eroded a warm start (replay on MMLU).
    vw_args: str = "--cb_adf -q sa --cb_type mtr -l 0.05 --quiet"
    exploration: Literal["squarecb", "epsilon", "greedy"] = "squarecb"
    squarecb_gamma: float = Field(default=40.0, gt=0)
    epsilon: float = Field(default=0.05, ge=0, le=1)
    # A model is "new" in a region of the query space until learned this often there, and gets
    # at least this probability on queries of that region (policy/regions.py).
    new_model_examples: int = Field(default=10, ge=0)
    new_model_min_probability: float = Field(default=0.1, ge=0, le=0.5)
    exploration_regions: int = Field(default=16, ge=1, le=256)  # k-means regions of a warm start
    preset_quality: float = Field(default=0.0, ge=0)
    preset_balanced: float = Field(default=0.2, ge=0)
    preset_cost: float = Field(default=1.0, ge=0)
    default_preset: Literal["quality", "balanced", "cost"] = "balanced"

    # Learning from feedback
    reward_wait_seconds: float = Field(default=0.0, ge=0)
    no_feedback: Literal["skip", "default"] = "skip"
    default_reward: float = Field(default=0.0, ge=0, le=1)
    reward_aggregation: Literal["mean", "earliest", "latest"] = "mean"

    # Background work
    scheduler_enabled: bool = True
    update_interval_seconds: float = Field(default=300.0, gt=0)
    # gated: the update job's learner goes live only once off-policy evaluation shows it beats
    # the active policy (jobs/update.py); always: every update goes live (the old behaviour).
    update_promotion: Literal["gated", "always"] = "gated"
    # At each preset λ a new policy must not be worse than the active one by more than this.
    # None: veto only a loss shown significant (upper bound < 0); a number: demand the 95% lower
    # bound of the difference be above −margin (non-inferiority), so a loss no data can rule out
    # also blocks the promotion.
    preset_loss_margin: float | None = Field(default=None, ge=0)
    state_poll_seconds: float = Field(default=2.0, gt=0)

    # Operations: processes, scheduling
    serve_workers: int = Field(default=1, ge=1, le=64)  # default of `serve --workers` (PostgreSQL)
    # Non-owners retry the scheduler lock this often; the owner checks it still holds it as often.
    scheduler_lock_retry_seconds: float = Field(default=10.0, gt=0)
    # Bounds how long a request waits for an unreachable database before it gets a 503.
    database_connect_timeout_seconds: int = Field(default=5, ge=1)
    # An installed copy (e.g. the container image) has no source tree around it to find them in.
    migrations_dir: Path | None = None

    # Production: auth, limits, proxy, metrics
    # Keys are enforced once any key exists; these force them on with none, or switch auth off.
    auth_required: bool = False
    auth_disabled: bool = False  # run open on purpose, e.g. behind an authenticating gateway
    # The web console's session cookies are signed with this; empty: a random secret per process
    # (sessions then end at restart, and with several workers it must be set).
    console_secret: str = ""
    console_session_hours: float = Field(default=12.0, gt=0)
    # Per key and process; 0 = no limit. 200/s: a client at the 50 routes/s target also sends a
    # feedback per route, and one process serves ~220 routes/s (README, Benchmarks).
    rate_limit_per_second: float = Field(default=200.0, ge=0)
    rate_limit_burst: int = Field(default=400, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    proxy_timeout_seconds: float = Field(default=120.0, gt=0)  # per upstream attempt
    proxy_max_attempts: int = Field(default=3, ge=1)  # the chosen model plus fallbacks
    log_format: Literal["text", "json"] = "text"
    # Upstream keys: a model's api_key_env may name BANDIT_ROUTER_UPSTREAM_KEY_<anything> or one of
    # these (comma-separated), fixed at start, so an admin key cannot read any other variable of
    # the process (the database URL, say) by sending it to an upstream of its choosing.
    upstream_api_key_envs: str = ""

    # Connections (uvicorn): beyond LIMIT_CONCURRENCY open connections or requests, new requests
    # get 503 at once; an idle keep-alive connection is closed after TIMEOUT_KEEP_ALIVE seconds.
    limit_concurrency: int | None = Field(default=1000, ge=1)
    timeout_keep_alive_seconds: int = Field(default=5, ge=1)
    backlog: int = Field(default=2048, ge=1)
    max_header_bytes: int = Field(default=65_536, ge=4096)  # one request's headers (h11)

    # Gold audits and bias-corrected retraining
    audit_rate_floor: float = Field(default=0.02, ge=0, le=1)  # every decision: π >= this
    audit_uncertainty_boost: float = Field(default=0.1, ge=0, le=1)  # π += boost·(1 − p_greedy)
    audit_rate_max: float = Field(default=0.5, ge=0, le=1)
    audit_claim_seconds: float = Field(default=3600.0, gt=0)  # a claim expires after this
    # The prompt and answer of an audited decision are kept until graded, at most this long.
    audit_text_days: float = Field(default=14.0, gt=0)
    # This share of graded audits is offered to a second grader, to measure agreement.
    audit_double_grade_rate: float = Field(default=0.0, ge=0, le=1)
    # The audit upkeep job (purge expired texts, refresh the report's Prometheus gauges).
    # The report reads every decision of its window: a week, refreshed every 15 minutes.
    audit_job_interval_seconds: float = Field(default=900.0, gt=0)
    report_window_days: float = Field(default=7.0, gt=0)  # the report's default window
    report_cache_seconds: float = Field(default=60.0, ge=0)  # a report is reused this long
    retrain_interval_seconds: float = Field(default=3600.0, gt=0)
    retrain_window_days: float = Field(default=30.0, gt=0)
    # judge: invert the judge's measurement model fitted on paired audits; paired / r / dr: and a
    # Meta-Router bias model on top; pooled / preference_only: no correction (for comparison).
    bias_method: Literal["judge", "paired", "r", "dr", "pooled", "preference_only"] = "paired"
    promotion_rule: Literal["point", "upper", "paired"] = "paired"
    # The estimator of the candidate-vs-served difference (values are always SNIPS).
    promotion_estimator: Literal["dr", "snips", "ips"] = "dr"
    promotion_holdout_fraction: float = Field(default=0.3, gt=0, lt=1)
    retrain_min_events: int = Field(default=50, ge=1)
    # The jobs stream the log in chunks of this many events (one cursor, server-side on
    # PostgreSQL): memory holds one chunk, whatever the window's size.
    job_chunk_events: int = Field(default=2000, ge=1)
    # Off-policy evaluation keeps a uniform sample (reservoir) of at most this many evaluated
    # events per job run: its memory and the estimate's cost stop growing with the window.
    ope_max_events: int = Field(default=100_000, ge=2)

    # Retention (jobs/retention.py): decisions with their feedback, audits and proxy records are
    # deleted after RETENTION_DAYS (0 = kept forever), rolled up per day and model first; stored
    # prompt text is cleared sooner. Deleted RETENTION_BATCH_ROWS per transaction.
    retention_days: float = Field(default=90.0, ge=0)
    prompt_retention_days: float = Field(default=7.0, ge=0)
    retention_interval_seconds: float = Field(default=3600.0, gt=0)
    retention_batch_rows: int = Field(default=5000, ge=1)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, v: str) -> str:
        if not v.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return v

    @field_validator("pool_file")
    @classmethod
    def _pool_exists(cls, v: Path) -> Path:
        if not v.is_file():
            raise ValueError(f"pool file {v} does not exist")
        return v

    @field_validator("migrations_dir")
    @classmethod
    def _migrations_exist(cls, v: Path | None) -> Path | None:
        if v is not None and not (v / "env.py").is_file():
            raise ValueError(f"{v} is not an Alembic migrations folder (no env.py)")
        return v

    @field_validator("vw_args")
    @classmethod
    def _vw_is_cb_adf(cls, v: str) -> str:
        if "--cb_adf" not in v.split():
            raise ValueError("must contain --cb_adf (the policy scores each model as an action)")
        return v

    @field_validator("upstream_api_key_envs")
    @classmethod
    def _key_envs(cls, v: str) -> str:
        for name in (n.strip() for n in v.split(",") if n.strip()):
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name.startswith(ENV_PREFIX) and not name.startswith(UPSTREAM_KEY_PREFIX):
                raise ValueError(
                    f"{name} is a {ENV_PREFIX}* name: the router's own settings are no upstream key"
                )
        return v

    @property
    def upstream_key_envs(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.upstream_api_key_envs.split(",") if n.strip())

    def preset_lambda(self, preset: str) -> float:
        return {
            "quality": self.preset_quality,
            "balanced": self.preset_balanced,
            "cost": self.preset_cost,
        }[preset]


class UserError(Exception):
    """A mistake in what the user gave (a path, a file's contents, an option): the command line
    prints its message as one line and exits 2, without a traceback."""


class ConfigError(UserError, RuntimeError):
    """Raised at start when a setting is invalid; the message names the environment variable."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "BANDIT_ROUTER_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
