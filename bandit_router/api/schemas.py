"""Request and response bodies. Field names are the public contract; see the README.

Types are strict where a client's mistake would otherwise be reinterpreted (`"lambda": true` is not
1.0, `"enabled": 0` is not false), and the rules between fields are written into the JSON schema
too (`oneOf`, `not`, `contains`), so /openapi.json says exactly which bodies are accepted."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from bandit_router.services.pool import MAX_OUTPUT_TOKENS, MAX_PRICE

# Text is blank when it holds only ASCII white space. Spelled out: what `\s` means differs
# between regex engines (Python's, ECMAScript's, Rust's), and the schema must mean what we check.
_BLANK_CHARS = r"[^\x09-\x0d\x20]"
_NON_BLANK = re.compile(_BLANK_CHARS)
NON_BLANK: JsonDict = {"pattern": _BLANK_CHARS}  # the same rule, stated in the schema


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC (store/models.py utcnow)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # 3 and 3.5, not true or "3"
Integer = Annotated[int, Field(strict=True)]  # 3, not 3.5, true or "3"
Flag = Annotated[bool, Field(strict=True)]  # true and false, not 0 or "true"
Timestamp = Annotated[datetime, AfterValidator(_utc)]
# RFC 3339, as the schema's `date-time` says: pydantic alone would also read "0.5" as Unix
# seconds and "2026-12-01" as midnight, which the schema refuses.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("a time is RFC 3339 text with an offset, e.g. 2026-12-01T00:00:00Z")
    return value


TimeIn = Annotated[datetime, BeforeValidator(_rfc3339)]
Preset = Literal["quality", "balanced", "cost"]
PRESETS: tuple[Preset, ...] = ("quality", "balanced", "cost")
# Which names are usable is the pool's state, which changes at run time: no enum can say it.
ModelName = Annotated[
    str,
    Field(min_length=1, max_length=200, description="a model of the pool: GET /v1/admin/models"),
]


def has_text(text: str | None) -> bool:
    return text is not None and _NON_BLANK.search(text) is not None


class ContentPart(BaseModel):
    type: str = "text"
    text: str | None = None


class Message(BaseModel):
    role: str = Field(min_length=1, max_length=50)
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content or [] if p.text)


# A conversation is routed on its last user message with text: there must be one.
USER_MESSAGE_WITH_TEXT = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"const": "user"},
        "content": {
            "anyOf": [
                {"type": "string", **NON_BLANK},
                {
                    "type": "array",
                    "contains": {
                        "type": "object",
                        "required": ["text"],
                        "properties": {"text": {"type": "string", **NON_BLANK}},
                    },
                },
            ]
        },
    },
}
Messages = Annotated[
    list[Message],
    Field(min_length=1, max_length=1000, json_schema_extra={"contains": USER_MESSAGE_WITH_TEXT}),
]


def last_user_text(messages: list[Message]) -> str | None:
    """What the policy embeds for a conversation: its last user message that has text (what the
    request is about; a long system prompt would fill the 256-token window)."""
    for message in reversed(messages):
        if message.role == "user" and has_text(text := message.text()):
            return text
    return None


def _route_rules(schema: dict[str, Any]) -> None:
    schema["oneOf"] = [
        {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
        {"required": ["messages"], "properties": {"messages": {"type": "array"}}},
    ]
    schema["not"] = {
        "required": ["lambda", "preset"],
        "properties": {"lambda": {"type": "number"}, "preset": {"type": "string"}},
    }


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra=_route_rules)

    # No length bound of its own: MAX_BODY_BYTES bounds it, as it bounds `messages`.
    prompt: str | None = Field(default=None, json_schema_extra=NON_BLANK)
    messages: Messages | None = None
    lam: Number | None = Field(default=None, alias="lambda", ge=0, le=1e6)
    preset: Preset | None = None
    models: list[ModelName] | None = Field(default=None, min_length=1, max_length=1000)
    exclude: list[ModelName] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _one_query(self) -> RouteRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.lam is not None and self.preset is not None:
            raise ValueError("give 'lambda' or 'preset', not both")
        if self.prompt is not None and not has_text(self.prompt):
            raise ValueError("the prompt is empty")
        if self.messages is not None and last_user_text(self.messages) is None:
            raise ValueError("'messages' has no user message with text: nothing to route on")
        return self

    def query_text(self) -> str:
        """What the policy embeds: the prompt, or the last user message with text."""
        if self.prompt is not None:
            return self.prompt
        return last_user_text(self.messages or []) or ""

    def full_text(self) -> str:
        """What the upstream model reads, for the input-token estimate."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(m.text() for m in self.messages or [])

    def transcript(self) -> str:
        """What a grader reads: the prompt, or the conversation with who said what."""
        if self.prompt is not None:
            return self.prompt
        return "\n\n".join(f"{m.role}: {m.text()}" for m in self.messages or [])


class CandidateOut(BaseModel):
    model: str
    predicted_quality: float
    expected_cost_usd: float
    score: float
    probability: float


class RouteResponse(BaseModel):
    decision_id: str
    model: str
    probability: float
    policy_version: int
    lam: float = Field(serialization_alias="lambda")
    candidates: list[CandidateOut]


# --- feedback -----------------------------------------------------------------------------------


class _Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_id: str = Field(min_length=1, max_length=64)
    source: Literal["user", "judge"] = "user"
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    # The rated answer's length: judges favour long answers, and retraining corrects for it when
    # it knows the length (the proxy records it by itself).
    output_tokens: Integer | None = Field(default=None, ge=0, le=10_000_000)

    @property
    def other(self) -> str | None:
        return None


class ThumbsFeedback(_Feedback):
    type: Literal["thumbs"]
    value: Literal["up", "down"]


class RatingFeedback(_Feedback):
    type: Literal["rating"]
    value: Integer = Field(ge=1, le=5)


class RewardFeedback(_Feedback):
    type: Literal["reward"]
    value: Number = Field(ge=0, le=1)


class PairwiseFeedback(_Feedback):
    """This decision's model's answer against `other_model`'s answer to the same query."""

    type: Literal["pairwise"]
    value: Literal["win", "tie", "loss"]
    other_model: ModelName

    @property
    def other(self) -> str | None:
        return self.other_model


FeedbackRequest = Annotated[
    ThumbsFeedback | RatingFeedback | RewardFeedback | PairwiseFeedback,
    Field(discriminator="type"),
]
AnyFeedback = ThumbsFeedback | RatingFeedback | RewardFeedback | PairwiseFeedback


class FeedbackResponse(BaseModel):
    decision_id: str
    status: Literal["created", "duplicate"]
    reward: float


# --- the model pool -----------------------------------------------------------------------------

Price = Annotated[Number, Field(ge=0, le=MAX_PRICE, description="USD per 1M tokens")]
OutputTokens = Annotated[Integer, Field(ge=1, le=MAX_OUTPUT_TOKENS)]
# Printable ASCII without spaces: every regex engine reads the class the same (IDNs: punycode).
BaseURL = Annotated[str, Field(max_length=500, pattern=r"^https?://[!-~]+$")]
# Which names are allowed depends on the settings: /openapi.json states them (api/openapi.py).
KeyEnv = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class ModelIn(BaseModel):
    """A new pool entry (POST /v1/admin/models)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@+-]+$")
    input_price: Price
    output_price: Price
    expected_output_tokens: OutputTokens = 300
    base_url: BaseURL | None = None
    api_key_env: KeyEnv | None = None
    enabled: Flag = True


def _not_null(schema: JsonDict) -> None:
    """The schema of a field that may be left out but not sent as null: its non-null branch."""
    branches = schema.pop("anyOf", None)
    schema.pop("default", None)
    for branch in branches if isinstance(branches, list) else []:
        if isinstance(branch, dict) and branch.get("type") != "null":
            schema.update(branch)


class ModelPatch(BaseModel):
    """Fields to change; `base_url` and `api_key_env` may be set to null (no upstream, no key).
    Leave a field out to keep it: the numbers cannot be null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    input_price: Price | None = Field(default=None, json_schema_extra=_not_null)
    output_price: Price | None = Field(default=None, json_schema_extra=_not_null)
    expected_output_tokens: OutputTokens | None = Field(default=None, json_schema_extra=_not_null)
    base_url: BaseURL | None = None
    api_key_env: KeyEnv | None = None
    enabled: Flag | None = Field(default=None, json_schema_extra=_not_null)

    @model_validator(mode="after")
    def _no_null_numbers(self) -> ModelPatch:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give at least one field")
        nulls = [
            f
            for f in ("input_price", "output_price", "expected_output_tokens", "enabled")
            if f in self.model_fields_set and getattr(self, f) is None
        ]
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null: leave a field out to keep it")
        return self


class ModelOut(BaseModel):
    name: str
    input_price: float | None
    output_price: float | None
    expected_output_tokens: int | None
    base_url: str | None
    api_key_env: str | None
    enabled: bool
    created_at: Timestamp
    updated_at: Timestamp
    warnings: list[str] = Field(
        default=[],
        description="why the model is left out of routing, or why its upstream cannot be reached",
    )


# --- jobs, policies, decisions ------------------------------------------------------------------


# The services hand over the store's records (dataclasses): validated from their attributes.
FROM_RECORD = ConfigDict(from_attributes=True)


class JobOut(BaseModel):
    model_config = FROM_RECORD

    id: int
    kind: str
    status: str
    trigger: str
    created_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    result: dict[str, Any] = {}
    error: str | None = None


class DailyOut(BaseModel):
    """One UTC day and chosen model, rolled up by the retention purge before its decisions went."""

    day: date
    model: str
    decisions: int
    feedback: int  # feedback items
    mean_reward: float | None  # over the feedback items; None without any
    cost_usd: float  # expected cost of the decisions
    audits: int  # graded audits
    mean_grade: float | None


class PolicyOut(BaseModel):
    model_config = FROM_RECORD

    id: int
    created_at: Timestamp
    vw_args: str
    model_counts: dict[str, Any]
    metrics: dict[str, Any]
    source: str
    parent_id: int | None
    active: bool
    activated_at: Timestamp | None


class FeedbackOut(BaseModel):
    id: int
    decision_id: str
    created_at: Timestamp
    type: str
    value: dict[str, Any]
    other_model: str | None
    reward: float
    source: str
    idempotency_key: str
    late: bool
    output_tokens: int | None


class ProxyAnswerOut(BaseModel):
    decision_id: str
    created_at: Timestamp
    served_model: str | None
    status: int
    attempts: list[dict[str, Any]]
    output_tokens: int | None


class DecisionOut(BaseModel):
    id: str
    created_at: Timestamp
    prompt_hash: str
    prompt: str | None
    input_tokens: int
    lam: float = Field(serialization_alias="lambda")
    preset: str | None
    candidates: list[dict[str, Any]]
    chosen_model: str
    probability: float
    exploration: str
    policy_version: int
    audit_probability: float
    audit_selected: bool
    learned_version: int | None
    feedback: list[FeedbackOut]
    proxy: ProxyAnswerOut | None


class AnswerIn(BaseModel):
    """The answer a /v1/route client got from the model it was routed to."""

    model_config = ConfigDict(extra="forbid")

    # No length bound of its own: MAX_BODY_BYTES bounds it, as it bounds a prompt.
    answer: str = Field(min_length=1, json_schema_extra=NON_BLANK)

    @model_validator(mode="after")
    def _has_text(self) -> AnswerIn:
        if not has_text(self.answer):
            raise ValueError("the answer is empty")
        return self


class AnswerOut(BaseModel):
    decision_id: str
    status: Literal["created", "replaced"]


class Health(BaseModel):
    status: Literal["ok"]
    policy_version: int | None
    models: list[str]


# --- the OpenAI-compatible proxy ----------------------------------------------------------------

ROUTER_MODEL = r"^router(:(quality|balanced|cost|lambda=[0-9]{1,6}(\.[0-9]{1,12})?))?$"
_ROUTER_MODEL = re.compile(ROUTER_MODEL)
MODEL_HELP = (
    "'model' must be 'router', 'router:<preset>' (quality, balanced, cost) or "
    "'router:lambda=<number>' (up to 6 digits before the point, no exponent)"
)


class ChatRequest(BaseModel):
    """An OpenAI chat request. `model` says how to route; every other field is forwarded to the
    chosen model's upstream as it was sent."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(json_schema_extra={"pattern": ROUTER_MODEL})
    messages: Messages

    @model_validator(mode="after")
    def _routable(self) -> ChatRequest:
        if not _ROUTER_MODEL.match(self.model):
            raise ValueError(f"{MODEL_HELP}; got {self.model[:80]!r}")
        if last_user_text(self.messages) is None:
            raise ValueError("'messages' has no user message with text: nothing to route on")
        return self

    def route_request(self) -> RouteRequest:
        """'router' -> the default preset, 'router:cost' -> a preset, 'router:lambda=0.3' -> λ."""
        option = self.model.removeprefix("router").removeprefix(":")
        if option.startswith("lambda="):
            lam = float(option.removeprefix("lambda="))
            return RouteRequest.model_validate({"messages": self.messages, "lambda": lam})
        preset = next((p for p in PRESETS if p == option), None)
        return RouteRequest(messages=self.messages, preset=preset)
