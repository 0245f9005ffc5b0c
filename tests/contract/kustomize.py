"""A small renderer of the kustomize subset infra/kubernetes/manifests uses.

Debian's kubectl is too old for these kustomizations and the project installs no
other kustomize, so the tests build the overlays with this and, where a recent
`kubectl` is on the PATH, check it renders exactly what `kubectl kustomize` does.

Supported: `resources` (files and directories), `namespace`, `labels` (`pairs`,
`includeSelectors`, `includeTemplates`) and `patches` with a `path` to a strategic-merge
patch (maps merge, lists of maps with a `name` merge by name, other values replace).
Anything else is refused, so a kustomization that grows past the subset fails loudly.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "resources", "namespace", "labels", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}


class KustomizeError(Exception):
    """A kustomization outside the supported subset, or a broken one."""


def build(directory: Path) -> list[dict[str, Any]]:
    """The objects the kustomization in `directory` renders, in kustomize's order."""
    path = directory / "kustomization.yaml"
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(spec) - KNOWN
    if unknown:
        raise KustomizeError(f"{path}: fields outside the supported subset: {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        target = directory / entry
        if target.is_dir():
            objects.extend(build(target))
        else:
            objects.extend(d for d in yaml.safe_load_all(target.read_text("utf-8")) if d)
    for patch_entry in spec.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise KustomizeError(f"{path}: only patches with a path are supported")
        for patch in yaml.safe_load_all((directory / patch_entry["path"]).read_text("utf-8")):
            _apply_patch(objects, patch, path)
    for label in spec.get("labels", []):
        _label(objects, label)
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] == "Namespace":
                obj["metadata"]["name"] = spec["namespace"]
            elif obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
            for subject in obj.get("subjects", []):
                if subject.get("kind") == "ServiceAccount" and "namespace" not in subject:
                    subject["namespace"] = spec["namespace"]
    return objects


def _apply_patch(objects: list[dict[str, Any]], patch: dict[str, Any], where: Path) -> None:
    for index, obj in enumerate(objects):
        if obj["kind"] == patch["kind"] and obj["metadata"]["name"] == patch["metadata"]["name"]:
            objects[index] = merge(obj, patch)
            return
    raise KustomizeError(
        f"{where}: patch target {patch['kind']}/{patch['metadata']['name']} not found"
    )


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge of the kinds of patches the overlays use."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        out_list = [copy.deepcopy(i) for i in base]
        for item in patch:
            match = next((i for i, b in enumerate(out_list) if b["name"] == item["name"]), None)
            if match is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[match] = merge(out_list[match], item)
        return out_list
    return copy.deepcopy(patch)


def _label(objects: list[dict[str, Any]], label: dict[str, Any]) -> None:
    pairs: dict[str, str] = label["pairs"]
    selectors = bool(label.get("includeSelectors", False))
    templates = bool(label.get("includeTemplates", False)) or selectors
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(pairs)
        spec = obj.get("spec", {})
        kind = obj["kind"]
        if selectors:
            if kind in WORKLOADS:
                spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
            elif kind == "Service":
                spec.setdefault("selector", {}).update(pairs)
        if templates:
            if kind in WORKLOADS or kind == "Job":
                template = spec["template"]
                template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            elif kind == "CronJob":
                job = spec["jobTemplate"]
                job.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
                job["spec"]["template"]["metadata"].setdefault("labels", {}).update(pairs)
