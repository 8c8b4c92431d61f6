"""Request and response bodies. Field names are the public contract; see the README."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Preset = Literal["quality", "balanced", "cost"]
ModelName = Field(min_length=1, max_length=200)


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


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    prompt: str | None = Field(default=None, max_length=200_000)
    messages: list[Message] | None = Field(default=None, max_length=1000)
    lam: float | None = Field(default=None, alias="lambda", ge=0, le=1e6, allow_inf_nan=False)
    preset: Preset | None = None
    models: list[str] | None = Field(default=None, max_length=1000)
    exclude: list[str] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _one_query(self) -> RouteRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.lam is not None and self.preset is not None:
            raise ValueError("give 'lambda' or 'preset', not both")
        if not self.query_text().strip():
            raise ValueError("the prompt is empty")
        if self.models is not None and not self.models:
            raise ValueError("'models' must name at least one model when given")
        return self

    def query_text(self) -> str:
        """What the policy embeds: the prompt, or the last user message of a conversation
        (what the request is about; a long system prompt would fill the 256-token window)."""
        if self.prompt is not None:
            return self.prompt
        users = [m for m in self.messages or [] if m.role == "user"]
        return (users[-1] if users else (self.messages or [Message(role="user")])[-1]).text()

    def full_text(self) -> str:
        """What the upstream model reads, for the input-token estimate."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(m.text() for m in self.messages or [])


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


FeedbackType = Literal["thumbs", "rating", "reward", "pairwise"]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_id: str = Field(min_length=1, max_length=64)
    type: FeedbackType
    value: str | float | bool
    other_model: str | None = Field(default=None, max_length=200)
    source: Literal["user", "judge"] = "user"
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    # The rated answer's length: judges favour long answers, and retraining corrects for it when
    # it knows the length (the proxy records it by itself).
    output_tokens: int | None = Field(default=None, ge=0, le=10_000_000)

    @field_validator("value")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if isinstance(v, float) and v != v:  # NaN
            raise ValueError("value must be a number, not NaN")
        return v

    @model_validator(mode="after")
    def _value_fits_type(self) -> FeedbackRequest:
        v = self.value
        if self.type == "thumbs" and v not in ("up", "down"):
            raise ValueError("thumbs feedback takes value 'up' or 'down'")
        if self.type == "rating" and (
            isinstance(v, bool) or not isinstance(v, int | float) or v not in (1, 2, 3, 4, 5)
        ):
            raise ValueError("rating feedback takes an integer value from 1 to 5")
        if self.type == "reward" and (
            isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0
        ):
            raise ValueError("reward feedback takes a number in [0, 1]")
        if self.type == "pairwise":
            if v not in ("win", "loss", "tie"):
                raise ValueError(
                    "pairwise feedback takes 'win', 'loss' or 'tie' (for this decision's model)"
                )
            if not self.other_model:
                raise ValueError(
                    "pairwise feedback needs 'other_model': the model it was compared with"
                )
        elif self.other_model is not None:
            raise ValueError("'other_model' is only for pairwise feedback")
        return self


class FeedbackResponse(BaseModel):
    decision_id: str
    status: Literal["created", "duplicate"]
    reward: float


class ModelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    output_price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    expected_output_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    base_url: str | None = None
    api_key_env: str | None = None
    enabled: bool | None = None


class JobOut(BaseModel):
    id: int
    kind: str
    status: str
    trigger: str
    created_at: Any
    started_at: Any = None
    finished_at: Any = None
    result: dict[str, Any] = {}
    error: str | None = None
