"""The starter policy shipped in the package: what a fresh store serves before any warm start.

`bandit-router build-starter` (bench/starter_build.py) trains it from public data with the
production warm-start code and exports the resulting policy-version row here, as two files in
`bandit_router/resources/starter/`: the Vowpal Wabbit model (`policy.vw`) and everything else
(`starter.json`). A new store inserts it as its first active version (services/policies.py).

A VW model only means something under the arguments and the features it was trained with, and
both change as the learner evolves. The JSON records them (`vw_args`, a SHA-256 of
`policy/features.py`); a starter built under others is refused with a warning and the store
starts cold, as it did before there was a starter. The fix is to run `build-starter` again.

This module stays light (no pandas, sklearn or VW): the service imports it at start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

from bandit_router.config import RESOURCES

log = logging.getLogger(__name__)

STARTER_DIR = RESOURCES / "starter"
POLICY_FILE = "policy.vw"
META_FILE = "starter.json"
FORMAT_VERSION = 1
SOURCE = "starter"  # policy_versions.source of an inserted starter
FEATURES_PY = Path(__file__).resolve().parents[1] / "policy" / "features.py"
REBUILD = "rebuild it with `bandit-router build-starter`"

# Held-out MMLU-Pro questions: never trained on, used for the recorded numbers and the tests. A
# hash of the question id (not a random draw) keeps the split the same whatever the data's order.
HELDOUT_MODULUS = 5  # one question in five


def is_heldout(question_id: object) -> bool:
    digest = hashlib.sha256(f"starter-heldout:{question_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HELDOUT_MODULUS == 0


def features_digest() -> str:
    """SHA-256 of the source that turns a query into VW features: any change to it may change
    what the stored weights mean."""
    return hashlib.sha256(FEATURES_PY.read_bytes()).hexdigest()


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def write_starter(folder: Path, row: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Export a policy-version row (and `meta`: provenance, evaluation) as the two files."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = bytes(row["model_bytes"])
    regions = row["regions"]
    doc = {
        "format": FORMAT_VERSION,
        **meta,
        "vw_args": row["vw_args"],
        "features_sha256": features_digest(),
        "policy_sha256": sha256(blob),
        "model_counts": row["model_counts"],
        "region_counts": row["region_counts"],
        "regions_b64": base64.b64encode(regions).decode() if regions else None,
        "metrics": row["metrics"],
    }
    (folder / POLICY_FILE).write_bytes(blob)
    (folder / META_FILE).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return doc


def read_meta(folder: Path = STARTER_DIR) -> dict[str, Any] | None:
    path = folder / META_FILE
    if not path.is_file():
        return None
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


def refusal(meta: dict[str, Any], vw_args: str, blob: bytes) -> str | None:
    """Why a starter must not be served under these settings and this code (None: it may)."""
    if meta.get("format") != FORMAT_VERSION:
        return f"format {meta.get('format')!r}, this version reads {FORMAT_VERSION}"
    if meta["vw_args"] != vw_args:
        return f"built with VW_ARGS {meta['vw_args']!r}, the settings say {vw_args!r}"
    if meta["features_sha256"] != features_digest():
        return "built with another policy/features.py"
    if meta["policy_sha256"] != sha256(blob):
        return f"{POLICY_FILE} is not the file {META_FILE} describes"
    return None


def load_starter(
    vw_args: str, pool_models: Collection[str], folder: Path = STARTER_DIR
) -> dict[str, Any] | None:
    """The policy-version columns of the packaged starter, or None when the store must start
    cold: no starter, a pool with a model the starter does not know (a user's own pool: not
    worth a warning), or a starter built under other VW arguments or features (a warning)."""
    meta = read_meta(folder)
    if meta is None:
        return None
    missing = sorted(set(pool_models) - set(meta["model_counts"]))
    if missing:
        log.info("starter policy not used: it does not know %s; starting cold", ", ".join(missing))
        return None
    blob = (folder / POLICY_FILE).read_bytes()
    problem = refusal(meta, vw_args, blob)
    if problem:
        log.warning("starter policy not used (%s): starting cold; %s", problem, REBUILD)
        return None
    log.info("new store: starting from the packaged starter policy built %s", meta["built_at"])
    regions = meta["regions_b64"]
    return {
        "vw_args": meta["vw_args"],
        "model_bytes": blob,
        "model_counts": meta["model_counts"],
        "region_counts": meta["region_counts"],
        "regions": base64.b64decode(regions) if regions else None,
        "metrics": meta["metrics"],
        "source": SOURCE,
    }
