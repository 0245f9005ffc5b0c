"""The platform's ML model: training, the registry, replication and verified loading.

The model is a scikit-learn classifier trained on a dataset that ships with
scikit-learn (the Wisconsin breast-cancer data: no download), saved with skops (not
pickle) and published to a registry folder with a manifest of SHA-256 digests. Each
region has its own copy (its "model store"); a service verifies its copy against the
registry's manifest before loading it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
GOLDEN_FILE = "golden.json"
DATASET = "sklearn.datasets.load_breast_cancer"
GOLDEN_PER_JURISDICTION = 16
FEATURE_DECIMALS = 6
SCORE_DECIMALS = 6
# skops refuses to load a type it was not told to trust: these are the only ones our
# model is made of.
TRUSTED_TYPES = [
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
    "numpy.dtype",
    "numpy.ndarray",
    "builtins.slice",
]


class Classifier(Protocol):
    """What the service needs of a model."""

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...


class ModelIntegrityError(Exception):
    """The model artifact does not match the registry's digest, or cannot be loaded."""


@dataclass(frozen=True)
class Manifest:
    """The registry's record of what was published."""

    digests: dict[str, str]
    dataset: str
    n_features: int
    created_at: float

    @property
    def model_digest(self) -> str:
        """SHA-256 of the published model file, hex."""
        return self.digests[MODEL_FILE]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _dataset() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return np.asarray(data.data, dtype=np.float64), np.asarray(data.target, dtype=np.int64)


def entity_features(jurisdiction: str, count: int) -> npt.NDArray[np.float64]:
    """Deterministic features of entities `<jurisdiction>-0 … -<count-1>`, one row each.

    Each entity is a row of the dataset scaled by a small per-entity factor, so the
    entities look like the training data without being copies of it. Values are rounded
    to the precision they are stored with, so a score computed here equals the service's.
    """
    x, _ = _dataset()
    seed = int.from_bytes(hashlib.sha256(jurisdiction.encode()).digest()[:4], "big")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(x), size=count)
    factors = 1.0 + rng.normal(0.0, 0.03, size=(count, x.shape[1]))
    return np.round(x[rows] * factors, FEATURE_DECIMALS)


def feature_record(values: npt.NDArray[np.float64] | list[float]) -> str:
    """How an entity's features are stored: `<sha256 of the JSON list, 16 hex>|<JSON list>`.

    The checksum is written by the loader on the primary and replicated with the value;
    a replica whose copy was damaged no longer matches it.
    """
    body = json.dumps([float(v) for v in values])
    return hashlib.sha256(body.encode()).hexdigest()[:16] + "|" + body


class FeatureChecksumError(ValueError):
    """A stored feature record does not match its checksum."""


def parse_feature_record(raw: str | bytes, verify: bool) -> npt.NDArray[np.float64]:
    """The features of a stored record; with `verify`, a damaged record raises."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    checksum, _, body = text.partition("|")
    if verify and hashlib.sha256(body.encode()).hexdigest()[:16] != checksum:
        raise FeatureChecksumError("feature record does not match its checksum")
    return np.asarray(json.loads(body), dtype=np.float64)


def golden_entities(count: int) -> list[int]:
    """Indices of the canary entities: spread over the id range, the same in every jurisdiction."""
    k = min(GOLDEN_PER_JURISDICTION, count)
    return sorted({(i * count) // k for i in range(k)})


def score(model: Classifier, features: npt.NDArray[np.float64]) -> float:
    """The service's answer for one entity: P(class 1), rounded as served."""
    proba = model.predict_proba(features.reshape(1, -1))
    return round(float(proba[0, 1]), SCORE_DECIMALS)


def train() -> Any:
    """Fit the platform's classifier (a scaled logistic regression); deterministic."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _dataset()
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))])
    model.fit(x, y)
    return model


def publish(registry: Path, jurisdictions: tuple[str, ...], entities: int) -> Manifest:
    """Train, save with skops, and write the manifest and golden canaries to `registry`."""
    import skops.io as sio

    registry.mkdir(parents=True, exist_ok=True)
    model = train()
    model_path = registry / MODEL_FILE
    sio.dump(model, model_path)
    manifest = Manifest(
        digests={MODEL_FILE: sha256_file(model_path)},
        dataset=DATASET,
        n_features=int(model.n_features_in_),
        created_at=time.time(),
    )
    (registry / MANIFEST_FILE).write_text(
        json.dumps(
            {
                "digests": manifest.digests,
                "dataset": manifest.dataset,
                "n_features": manifest.n_features,
                "created_at": manifest.created_at,
            },
            indent=2,
        )
        + "\n"
    )
    golden: dict[str, float] = {}
    for jurisdiction in jurisdictions:
        feats = entity_features(jurisdiction, entities)
        for index in golden_entities(entities):
            golden[f"{jurisdiction}-{index}"] = score(model, feats[index])
    (registry / GOLDEN_FILE).write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(registry: Path) -> Manifest:
    """The registry's manifest; raises ModelIntegrityError when it is missing or malformed."""
    try:
        raw = json.loads((registry / MANIFEST_FILE).read_text())
        return Manifest(
            digests=dict(raw["digests"]),
            dataset=str(raw["dataset"]),
            n_features=int(raw["n_features"]),
            created_at=float(raw["created_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelIntegrityError(f"{registry / MANIFEST_FILE}: unreadable manifest") from exc


def deployed_model(registry: Path) -> dict[str, Any]:
    """What a run's `world.json` records as `model`: the digest the registry deployed.

    Every answer's `X-Model-Digest` must equal `digest` (the probes' expected digest).
    An unreadable manifest gives `digest: None` and the reason: the digest check is then
    `no-data`, never a guess.
    """
    try:
        manifest = read_manifest(registry)
    except ModelIntegrityError as exc:
        return {"digest": None, "source": str(registry / MANIFEST_FILE), "reason": str(exc)}
    return {
        "digest": manifest.model_digest,
        "file": MODEL_FILE,
        "source": str(registry / MANIFEST_FILE),
    }


def read_golden(registry: Path) -> dict[str, float]:
    """Canary entity id -> the score a correct replica answers."""
    raw = json.loads((registry / GOLDEN_FILE).read_text())
    return {str(k): float(v) for k, v in raw.items()}


def replicate(registry: Path, store: Path) -> None:
    """Copy the registry's model to one region's model store (as object storage would)."""
    store.mkdir(parents=True, exist_ok=True)
    tmp = store / (MODEL_FILE + ".tmp")
    shutil.copyfile(registry / MODEL_FILE, tmp)
    tmp.replace(store / MODEL_FILE)


def load_model(path: Path, manifest: Manifest, verify: bool) -> tuple[Classifier, str]:
    """Load a region's model copy, returning it with the digest of the bytes loaded.

    With `verify`, a copy whose digest differs from the registry's manifest is refused
    (ModelIntegrityError) before a single byte is deserialised.
    """
    import skops.io as sio

    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise ModelIntegrityError(f"{path}: cannot read model: {exc.strerror}") from exc
    if verify and digest != manifest.model_digest:
        raise ModelIntegrityError(
            f"{path}: digest {digest[:12]}… does not match the registry's "
            f"{manifest.model_digest[:12]}…"
        )
    try:
        model = sio.load(path, trusted=TRUSTED_TYPES)
    except Exception as exc:  # skops raises many kinds on a damaged file
        raise ModelIntegrityError(f"{path}: cannot load model: {exc}") from exc
    return model, digest


def corrupt_model(path: Path, flips: int = 8) -> str:
    """Flip the sign bit of `flips` weights of a region's model copy; returns the new digest.

    The file stays a well-formed skops archive (a flipped byte in the container would
    be caught by the zip checksums, which is not the failure we want to prove): only
    the weights are wrong, so a service that does not verify digests loads it and
    serves wrong answers.
    """
    import skops.io as sio

    model = sio.load(path, trusted=TRUSTED_TYPES)
    coef = model.named_steps["clf"].coef_
    flat = coef.reshape(-1)
    count = min(flips, flat.size)
    raw = flat.view(np.uint8).reshape(flat.size, flat.itemsize)
    raw[:count, flat.itemsize - 1] ^= 0x80  # sign bit of a little-endian float64
    tmp = path.with_suffix(".corrupt.tmp")
    sio.dump(model, tmp)
    tmp.replace(path)
    return sha256_file(path)
