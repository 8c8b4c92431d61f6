"""The model pool: prices, expected answer length, and the expected cost of a query."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ModelSpecIn(BaseModel):
    """A pool entry as written in the pool YAML or sent to the admin API."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@+-]+$")
    input_price: float = Field(ge=0, description="USD per 1M input tokens")
    output_price: float = Field(ge=0, description="USD per 1M output tokens")
    expected_output_tokens: int = Field(default=300, ge=1, le=1_000_000)
    base_url: str | None = None
    api_key_env: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input_price: float
    output_price: float
    expected_output_tokens: int
    base_url: str | None = None
    api_key_env: str | None = None
    enabled: bool = True

    def expected_cost(self, input_tokens: int) -> float:
        """USD for one call with `input_tokens` in and the model's typical answer out."""
        return (
            input_tokens * self.input_price + self.expected_output_tokens * self.output_price
        ) / 1e6

    @classmethod
    def from_row(cls, row: object) -> ModelSpec:
        """From a stored pool row (store/records.py: ModelRecord): policy may not import the
        store, so any object with these fields as attributes."""
        return cls(**{k: getattr(row, k) for k in cls.__dataclass_fields__})


class PoolFileError(ValueError):
    pass


def load_pool_file(path: Path) -> list[ModelSpecIn]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PoolFileError(f"cannot read pool file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise PoolFileError(f"pool file {path}: expected a mapping with a 'models' list")
    specs = []
    for i, item in enumerate(data["models"]):
        try:
            specs.append(ModelSpecIn.model_validate(item))
        except ValidationError as exc:
            raise PoolFileError(f"pool file {path}, models[{i}]: {exc}") from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise PoolFileError(f"pool file {path}: duplicate model names")
    return specs
