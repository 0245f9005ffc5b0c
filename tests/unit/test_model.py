from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infra.local import model


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("registry")
    model.publish(path, ("us", "eu"), 500)
    return path


def test_entity_features_are_deterministic_and_differ_by_jurisdiction() -> None:
    a = model.entity_features("us", 50)
    assert a.shape == (50, 30)
    assert np.array_equal(a, model.entity_features("us", 50))
    assert not np.array_equal(a, model.entity_features("eu", 50))


def test_manifest_digest_matches_published_file(registry: Path) -> None:
    manifest = model.read_manifest(registry)
    assert manifest.model_digest == model.sha256_file(registry / model.MODEL_FILE)
    assert manifest.n_features == 30


def test_golden_scores_are_what_a_loaded_copy_answers(registry: Path, tmp_path: Path) -> None:
    model.replicate(registry, tmp_path)
    manifest = model.read_manifest(registry)
    loaded, digest = model.load_model(tmp_path / model.MODEL_FILE, manifest, verify=True)
    assert digest == manifest.model_digest
    golden = model.read_golden(registry)
    assert len(golden) == 2 * model.GOLDEN_PER_JURISDICTION
    feats = model.entity_features("eu", 500)
    for entity, expected in golden.items():
        if entity.startswith("eu-"):
            assert model.score(loaded, feats[int(entity.split("-")[1])]) == expected


def test_corrupt_copy_is_refused_with_verification(registry: Path, tmp_path: Path) -> None:
    model.replicate(registry, tmp_path)
    path = tmp_path / model.MODEL_FILE
    manifest = model.read_manifest(registry)
    new_digest = model.corrupt_model(path)
    assert new_digest != manifest.model_digest
    with pytest.raises(model.ModelIntegrityError, match="does not match"):
        model.load_model(path, manifest, verify=True)
    # Without verification the corrupt copy loads and answers differently: the
    # failure the probes must catch.
    loaded, digest = model.load_model(path, manifest, verify=False)
    assert digest == new_digest
    golden = model.read_golden(registry)
    feats = model.entity_features("us", 500)
    wrong = [
        e
        for e, v in golden.items()
        if e.startswith("us-") and model.score(loaded, feats[int(e.split("-")[1])]) != v
    ]
    assert wrong


def test_unreadable_manifest(tmp_path: Path) -> None:
    with pytest.raises(model.ModelIntegrityError, match="unreadable manifest"):
        model.read_manifest(tmp_path)
