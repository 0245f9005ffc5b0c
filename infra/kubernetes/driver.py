"""Region faults on Kubernetes, through chaostoolkit-kubernetes, with their reverts.

`apply(op, args, configuration, secrets)` is what `infra.actions` calls when the
experiment's `gameday_platform` is `kubernetes`; `plan(op, args, configuration)` says
what `apply` would touch, with read-only requests. Both load the platform file named by
`gameday_platform_file` and refuse, before the first request, any region, context,
namespace or API server the file does not allow.

The state a revert needs (policies created, replica counts before the scale to zero,
pods damaged) is kept in `<events dir>/kubernetes-state.json`, written before each
change, so a drill killed half way can still be rolled back by `revert-all`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from infra.errors import ConfigError, FaultError, UnsupportedFault
from infra.kubernetes.config import KubernetesRegion, KubernetesTarget, load
from infra.types import FaultRecord, JsonValue, append_event

__all__ = ["STATE_FILE", "apply", "plan"]

STATE_FILE = "kubernetes-state.json"
IN_CLUSTER = "in-cluster"
DENY_INGRESS = "chaostoolkit-deny-all-ingress"
DENY_EGRESS = "chaostoolkit-deny-all-egress"
PARTITION_INGRESS = "gameday-partition-ingress"
PARTITION_EGRESS = "gameday-partition-egress"
CHAOS_MESH_CRD = "networkchaos.chaos-mesh.org"
MANAGED = {"app.kubernetes.io/managed-by": "gameday"}
Kind = Literal["deployment", "statefulset"]


# --------------------------------------------------------------------------- state
class Scaled(BaseModel):
    """A workload scaled to zero and the replica count it had before."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    name: str
    replicas: int


class Active(BaseModel):
    """One applied fault and everything its revert must undo."""

    model_config = ConfigDict(extra="forbid")

    id: str
    fault: str
    target: str
    regions: list[str]
    applied_at: float | None = None
    policies: list[tuple[str, str]] = []  # (region, policy name)
    scaled: list[Scaled] = []
    pods: list[str] = []
    chaos: list[str] = []


class State(BaseModel):
    """The driver's state file: the faults still active, oldest first."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    active: list[Active] = []


class _Store:
    """Reads and writes the state file; every change is saved before the next request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8") if path.exists() else ""
            self.state = State.model_validate_json(text) if text else State()
        except (OSError, ValidationError) as exc:
            raise ConfigError(f"{path}: unreadable kubernetes state: {exc}") from exc

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(self.state.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(self.path)

    def open(self, fault: str, target: str, regions: list[str]) -> Active:
        entry = Active(id=uuid.uuid4().hex[:12], fault=fault, target=target, regions=regions)
        self.state.active.append(entry)
        self.save()
        return entry

    def find(self, fault: str, region: str) -> list[Active]:
        return [a for a in self.state.active if a.fault == fault and region in a.regions]

    def close(self, entries: list[Active]) -> None:
        ids = {e.id for e in entries}
        self.state.active = [a for a in self.state.active if a.id not in ids]
        self.save()


# --------------------------------------------------------------------------- context
class _Session:
    """The validated platform, the state and the events file of one driver call."""

    def __init__(self, configuration: dict[str, Any] | None) -> None:
        config = configuration or {}
        raw = config.get("gameday_platform_file")
        if not isinstance(raw, str) or not raw:
            raise ConfigError(
                "configuration gameday_platform_file is required for gameday_platform "
                "'kubernetes' (the platform file naming the regions' contexts and namespaces)"
            )
        self.target: KubernetesTarget = load(Path(raw))
        events = config.get("gameday_events") or os.environ.get("GAMEDAY_EVENTS")
        if not events:
            raise ConfigError(
                "configuration gameday_events (or $GAMEDAY_EVENTS) is required: "
                "the kubernetes driver keeps its revert state next to the events file"
            )
        self.events = Path(str(events))
        self.store = _Store(self.events.parent / STATE_FILE)
        self._secrets: dict[str, dict[str, str]] = {}

    def region(self, name: Any) -> KubernetesRegion:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("region is required: an action never targets everything")
        return self.target.region(name.strip())

    def secrets(self, region: KubernetesRegion) -> dict[str, str]:
        """The chaostoolkit-kubernetes secrets that pin the call to the region's context.

        Checked before any request: the kubeconfig must exist (without one the library
        silently talks to http://localhost), hold the context, and, when the platform
        file lists servers, point it at one of them.
        """
        if region.context not in self._secrets:
            self._secrets[region.context] = _context_secrets(self.target, region.context)
        return self._secrets[region.context]

    def record(self, record: FaultRecord) -> dict[str, Any]:
        append_event(self.events, record)
        return asdict(record)


def kubeconfig_path() -> Path:
    """The kubeconfig chaostoolkit-kubernetes reads: `$KUBECONFIG` or ~/.kube/config.

    The kubernetes client fixes its default path when first imported, while
    chaostoolkit-kubernetes checks `$KUBECONFIG` at each call: when the two differ the
    safety checks would read one file and the requests go by another, so that is
    refused.
    """
    from kubernetes.config import kube_config

    checked = Path(os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config")))
    loaded = Path(os.path.expanduser(kube_config.KUBE_CONFIG_DEFAULT_LOCATION))
    if checked != loaded:
        raise ConfigError(
            f"KUBECONFIG is {str(checked)!r} but the kubernetes client loads {str(loaded)!r} "
            "(KUBECONFIG changed after the client was imported): set it before starting"
        )
    return checked


def _context_secrets(target: KubernetesTarget, context: str) -> dict[str, str]:
    if context not in target.allow.contexts:
        raise ConfigError(f"{target.source}: context {context!r} is not in allow.kubernetes")
    path = kubeconfig_path()
    if context == IN_CLUSTER:
        if os.environ.get("CHAOSTOOLKIT_IN_POD") != "true" or path.exists():
            raise ConfigError(
                f"context {IN_CLUSTER!r} means the pod's service account: it needs "
                f"CHAOSTOOLKIT_IN_POD=true and no kubeconfig (found {str(path)!r})"
            )
        return {}
    if os.pathsep in str(path):
        raise ConfigError(f"KUBECONFIG {str(path)!r}: name one file, not a list")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        # chaostoolkit-kubernetes would fall back to http://localhost: refuse instead.
        raise ConfigError(f"kubeconfig {str(path)!r} cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"kubeconfig {str(path)!r} is not valid YAML: {exc}") from exc
    contexts = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or []}
    if context not in contexts:
        known = ", ".join(sorted(str(c) for c in contexts))
        raise ConfigError(f"kubeconfig {str(path)!r} has no context {context!r} (has: {known})")
    cluster_name = contexts[context].get("cluster")
    clusters = {c.get("name"): c.get("cluster") or {} for c in doc.get("clusters") or []}
    server = str(clusters.get(cluster_name, {}).get("server", ""))
    if target.allow.servers and server.rstrip("/") not in [
        s.rstrip("/") for s in target.allow.servers
    ]:
        raise ConfigError(
            f"context {context!r} points at server {server!r}, which is not in "
            f"allow.kubernetes.servers ({', '.join(target.allow.servers)})"
        )
    # Secrets go to the activity call itself: the library reads the context from here,
    # never from an experiment's activity-level `secrets:` (which it ignores).
    return {"KUBERNETES_CONTEXT": context}


def _label_selector(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


@contextmanager
def _api_errors(what: str) -> Iterator[None]:
    from chaoslib.exceptions import ActivityFailed
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        raise FaultError(f"{what}: the API answered {exc.status} {exc.reason}") from exc
    except ActivityFailed as exc:
        raise FaultError(f"{what}: {exc}") from exc
    except HTTPError as exc:
        raise FaultError(f"{what}: cannot reach the API server: {exc}") from exc


def _missing(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException

    cause = exc.__cause__
    return isinstance(cause, ApiException) and cause.status == 404


def _unless_missing(what: str, call: Callable[[], object]) -> bool:
    """Run the API `call`; False when its object was not there (404), True when it ran.

    Any other API failure raises FaultError naming `what`.
    """
    try:
        with _api_errors(what):
            call()
    except FaultError as exc:
        if _missing(exc):
            return False
        raise
    return True


def _apps(secrets: dict[str, str]) -> Any:
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    return client.AppsV1Api(create_k8s_api_client(secrets))


def _replicas(secrets: dict[str, str], kind: Kind, name: str, namespace: str) -> int:
    apps = _apps(secrets)
    with _api_errors(f"read the scale of {kind} {namespace}/{name}"):
        if kind == "deployment":
            scale = apps.read_namespaced_deployment_scale(name, namespace)
        else:
            scale = apps.read_namespaced_stateful_set_scale(name, namespace)
    return int(scale.spec.replicas or 0)


def _scale(secrets: dict[str, str], kind: Kind, name: str, namespace: str, replicas: int) -> None:
    from chaosk8s.deployment.actions import scale_deployment
    from chaosk8s.statefulset.actions import scale_statefulset

    scaler = scale_deployment if kind == "deployment" else scale_statefulset
    with _api_errors(f"scale {kind} {namespace}/{name} to {replicas}"):
        scaler(name=name, replicas=replicas, ns=namespace, secrets=secrets)


def _remove_policy(secrets: dict[str, str], namespace: str, name: str) -> bool:
    """Delete a NetworkPolicy; False when it was already gone (a revert is idempotent)."""
    from chaosk8s.networking.actions import remove_network_policy

    return _unless_missing(
        f"remove NetworkPolicy {namespace}/{name}",
        lambda: remove_network_policy(name, ns=namespace, secrets=secrets),
    )


# --------------------------------------------------------------------------- kill
def _kill(session: _Session, args: dict[str, Any]) -> dict[str, Any]:
    from chaosk8s.networking.actions import deny_all_egress, deny_all_ingress

    name = str(args.get("region", "")).strip()
    region = session.region(name)
    secrets = session.secrets(region)
    if session.store.find("kill-region", name):
        raise FaultError(f"region {name!r} is already killed")
    entry = session.store.open("kill-region", name, [name])
    try:
        # The network goes first, as on the local platform: scaling alone would let
        # data already in flight reach the replicas and hide the real loss.
        for policy, deny in ((DENY_INGRESS, deny_all_ingress), (DENY_EGRESS, deny_all_egress)):
            entry.policies.append((name, policy))
            session.store.save()
            with _api_errors(f"create NetworkPolicy {region.namespace}/{policy}"):
                deny(label_selectors=dict(region.selector), ns=region.namespace, secrets=secrets)
        entry.applied_at = time.time()
        for kind, names in _workloads(region):
            for workload in names:
                replicas = _replicas(secrets, kind, workload, region.namespace)
                entry.scaled.append(Scaled(kind=kind, name=workload, replicas=replicas))
                session.store.save()
                _scale(secrets, kind, workload, region.namespace, 0)
    except FaultError:
        _undo(session, entry, {}, [])
        raise
    session.store.save()
    details: dict[str, JsonValue] = {
        "jurisdiction": session.target.jurisdictions.get(name),
        "context": region.context,
        "namespace": region.namespace,
        "policies": [p for _, p in entry.policies],
        "scaled_to_zero": {f"{s.kind}/{s.name}": s.replicas for s in entry.scaled},
    }
    return session.record(
        FaultRecord("fault", "kill-region", name, entry.id, entry.applied_at, details=details)
    )


def _workloads(region: KubernetesRegion) -> list[tuple[Kind, list[str]]]:
    return [("deployment", region.deployments), ("statefulset", region.statefulsets)]


def _undo(
    session: _Session, entry: Active, restored: dict[str, JsonValue], removed: list[JsonValue]
) -> None:
    """Revert what `entry` recorded, noting it in `restored` and `removed`.

    Policies go first, then workloads back to their counts, as on the local platform
    (link up, then restart). Something already gone counts as undone, so a revert that
    failed half way can simply be run again: the entry stays in the state until then.
    """
    region = session.target.region(entry.regions[0])
    for region_name, policy in entry.policies:
        home = session.target.region(region_name)
        if _remove_policy(session.secrets(home), home.namespace, policy):
            removed.append(f"{home.namespace}/{policy}")
    for scaled in entry.scaled:
        _scale(session.secrets(region), scaled.kind, scaled.name, region.namespace, scaled.replicas)
        restored[f"{scaled.kind}/{scaled.name}"] = scaled.replicas
    for pod in entry.pods:
        _delete_pod(session.secrets(region), region.namespace, pod)
        removed.append(f"{region.namespace}/pod/{pod}")
    for chaos in entry.chaos:
        if _delete_chaos(session.secrets(region), region.namespace, chaos):
            removed.append(f"{region.namespace}/networkchaos/{chaos}")
    session.store.close([entry])


def _revert(session: _Session, fault: str, target: str, entries: list[Active]) -> dict[str, Any]:
    restored: dict[str, JsonValue] = {}
    removed: list[JsonValue] = []
    for entry in entries:
        _undo(session, entry, restored, removed)
    details: dict[str, JsonValue] = {
        "fault_ids": [e.id for e in entries],
        "restored": restored,
        "removed": removed,
    }
    record = FaultRecord(
        "revert", fault, target, uuid.uuid4().hex[:12], reverted_at=time.time(), details=details
    )
    return session.record(record)


def _restore(session: _Session, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("region", "")).strip()
    region = session.region(name)
    session.secrets(region)
    entries = session.store.find("kill-region", name)
    if not entries:
        raise FaultError(f"region {name!r} is not killed")
    return _revert(session, "kill-region", name, entries)


# --------------------------------------------------------------------------- partition
def _regions(value: Any, what: str) -> list[str]:
    names = value.split(",") if isinstance(value, str) else list(value or [])
    names = [str(n).strip() for n in names if str(n).strip()]
    if not names:
        raise ConfigError(f"{what} is required (region names)")
    return names


def _peers(session: _Session, region: KubernetesRegion, others: list[str]) -> list[dict[str, Any]]:
    """NetworkPolicy peers meaning "anything but the regions `others`".

    Peers in the same cluster are excluded by namespace name; peers in another cluster
    only by the CIDRs the platform file gives for them (their pods' addresses as this
    cluster sees them, which NAT may hide: see docs/kubernetes.md).
    """
    same: list[str] = []
    cidrs: list[str] = []
    for other in others:
        if other == "edge":
            raise UnsupportedFault(
                "a kubernetes partition from 'edge' is not supported: name the regions"
            )
        peer = session.target.region(other)
        if peer.context == region.context:
            same.append(peer.namespace)
        elif peer.cidrs:
            cidrs.extend(peer.cidrs)
        else:
            raise ConfigError(
                f"{session.target.source}: regions.{other}.kubernetes.cidrs: required to "
                f"partition it from a region of another context ({region.context!r})"
            )
    namespaces: dict[str, Any] = {}
    if same:
        namespaces = {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": same}
            ]
        }
    peers: list[dict[str, Any]] = [{"namespaceSelector": namespaces}]
    for everything in ("0.0.0.0/0", "::/0"):
        excluded = [c for c in cidrs if (":" in c) == (":" in everything)]
        if excluded or not same:
            block: dict[str, Any] = {"cidr": everything}
            if excluded:
                block["except"] = excluded
            peers.append({"ipBlock": block})
    return peers


def _partition_policies(
    session: _Session, name: str, others: list[str], direction: str
) -> list[dict[str, Any]]:
    region = session.target.region(name)
    peers = _peers(session, region, others)
    metadata = {"labels": dict(MANAGED)}
    policies: list[dict[str, Any]] = []
    if direction in ("both", "b-to-a"):
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": PARTITION_INGRESS, **metadata},
                "spec": {
                    "podSelector": {"matchLabels": dict(region.selector)},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": peers}],
                },
            }
        )
    if direction in ("both", "a-to-b"):
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": PARTITION_EGRESS, **metadata},
                "spec": {
                    "podSelector": {"matchLabels": dict(region.selector)},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": peers}],
                },
            }
        )
    return policies


def _partition_plan(
    session: _Session, args: dict[str, Any]
) -> tuple[list[str], list[str], str, list[tuple[str, dict[str, Any]]]]:
    side_a = _regions(args.get("side_a"), "side_a")
    side_b = _regions(args.get("side_b"), "side_b")
    direction = str(args.get("direction", "both"))
    if direction not in ("both", "a-to-b", "b-to-a"):
        raise ConfigError(f"direction {direction!r} must be 'both', 'a-to-b' or 'b-to-a'")
    if set(side_a) & set(side_b):
        raise ConfigError(
            f"regions on both sides of the partition: {sorted(set(side_a) & set(side_b))}"
        )
    planned: list[tuple[str, dict[str, Any]]] = []
    for name in side_a:
        region = session.region(name)
        session.secrets(region)
        planned.extend((name, p) for p in _partition_policies(session, name, side_b, direction))
    for name in side_b:
        if name != "edge":
            session.secrets(session.region(name))
    return side_a, side_b, direction, planned


def _partition(session: _Session, args: dict[str, Any]) -> dict[str, Any]:
    from chaosk8s.networking.actions import create_network_policy

    side_a, side_b, direction, planned = _partition_plan(session, args)
    for name in side_a:
        if session.store.find("partition", name):
            raise FaultError(f"region {name!r} is already partitioned; heal first")
    target = ",".join(side_a) + "|" + ",".join(side_b)
    entry = session.store.open("partition", target, side_a)
    try:
        for name, policy in planned:
            region = session.target.region(name)
            entry.policies.append((name, policy["metadata"]["name"]))
            session.store.save()
            with _api_errors(
                f"create NetworkPolicy {region.namespace}/{policy['metadata']['name']}"
            ):
                create_network_policy(
                    spec=policy, ns=region.namespace, secrets=session.secrets(region)
                )
    except FaultError:
        _undo(session, entry, {}, [])
        raise
    entry.applied_at = time.time()
    session.store.save()
    details: dict[str, JsonValue] = {
        "side_a": list(side_a),
        "side_b": list(side_b),
        "direction": direction,
        "policies": [f"{session.target.region(r).namespace}/{p}" for r, p in entry.policies],
    }
    return session.record(
        FaultRecord("fault", "partition", target, entry.id, entry.applied_at, details=details)
    )


def _heal(session: _Session, args: dict[str, Any]) -> dict[str, Any]:
    entries = [a for a in session.store.state.active if a.fault == "partition"]
    record: dict[str, Any] = {}
    for entry in entries:
        record = _revert(session, "partition", entry.target, [entry])
    if not entries:
        record = session.record(
            FaultRecord(
                "revert",
                "partition",
                "*",
                uuid.uuid4().hex[:12],
                reverted_at=time.time(),
                details={"fault_ids": [], "removed": []},
            )
        )
    return record


# --------------------------------------------------------------------------- replicas
def _corrupt(session: _Session, args: dict[str, Any]) -> dict[str, Any]:
    from chaosk8s.pod.actions import exec_in_pods

    name = str(args.get("region", "")).strip()
    region = session.region(name)
    what = str(args.get("what", "model"))
    if what not in ("model", "features"):
        raise ConfigError(f"what {what!r} must be 'model' or 'features'")
    count = int(args.get("count", 100))
    if count < 1:
        raise ConfigError(f"count {count} must be at least 1")
    damage = next((d for kind, d in region.replicas.items() if kind == what), None)
    if damage is None:
        raise ConfigError(
            f"{session.target.source}: regions.{name}.kubernetes.replicas.{what}: "
            f"not configured: the platform file does not say how to damage this replica"
        )
    secrets = session.secrets(region)
    if session.store.find(f"corrupt-{what}", name):
        raise FaultError(f"the {what} replica of region {name!r} is already corrupt")
    command = [part.replace("{count}", str(count)) for part in damage.command]
    entry = session.store.open(f"corrupt-{what}", name, [name])
    with _api_errors(f"exec in a pod of {region.namespace} ({_label_selector(damage.selector)})"):
        results = exec_in_pods(
            cmd=command,
            label_selector=_label_selector(damage.selector),
            qty=1,
            ns=region.namespace,
            container_name=damage.container,
            secrets=secrets,
        )
    done = [r for r in results if r.get("exit_code") == 0]
    if not results or not done:
        session.store.close([entry])
        why = results[0].get("stderr") if results else "no pod matches with that container"
        raise FaultError(
            f"corrupting the {what} replica in {region.namespace} "
            f"({_label_selector(damage.selector)}, container {damage.container!r}) failed: {why}"
        )
    entry.pods = [str(r["pod_name"]) for r in done]
    entry.applied_at = time.time()
    session.store.save()
    details: dict[str, JsonValue] = {
        "what": what,
        "namespace": region.namespace,
        "pods": list(entry.pods),
        "count": count,
    }
    return session.record(
        FaultRecord("fault", f"corrupt-{what}", name, entry.id, entry.applied_at, details=details)
    )


def _delete_pod(secrets: dict[str, str], namespace: str, pod: str) -> None:
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    # By exact name, through the core API: terminate_pods with a pattern could match
    # more pods than the one damaged.
    core = client.CoreV1Api(create_k8s_api_client(secrets))
    try:
        with _api_errors(f"delete pod {namespace}/{pod}"):
            core.delete_namespaced_pod(pod, namespace)
    except FaultError as exc:
        if not _missing(exc):
            raise


def _repair(session: _Session, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("region", "")).strip()
    region = session.region(name)
    session.secrets(region)
    what = str(args.get("what", "all"))
    if what not in ("model", "features", "all"):
        raise ConfigError(f"what {what!r} must be 'model', 'features' or 'all'")
    kinds = ["model", "features"] if what == "all" else [what]
    record: dict[str, Any] = {}
    for kind in kinds:
        entries = session.store.find(f"corrupt-{kind}", name)
        if entries:
            record = _revert(session, f"corrupt-{kind}", name, entries)
    if not record:
        raise FaultError(f"region {name!r} has no corrupt {what} replica to repair")
    return record


# --------------------------------------------------------------------------- links
def _chaos_mesh(secrets: dict[str, str]) -> bool:
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    api = client.ApiextensionsV1Api(create_k8s_api_client(secrets))
    return _unless_missing(
        f"read CustomResourceDefinition {CHAOS_MESH_CRD}",
        lambda: api.read_custom_resource_definition(CHAOS_MESH_CRD),
    )


def _delete_chaos(secrets: dict[str, str], namespace: str, name: str) -> bool:
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    api = client.CustomObjectsApi(create_k8s_api_client(secrets))
    return _unless_missing(
        f"delete NetworkChaos {namespace}/{name}",
        lambda: api.delete_namespaced_custom_object(
            "chaos-mesh.org", "v1alpha1", namespace, "networkchaos", name
        ),
    )


def _degrade(session: _Session, args: dict[str, Any]) -> dict[str, Any]:
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    name = str(args.get("region", "")).strip()
    region = session.region(name)
    secrets = session.secrets(region)
    delay_ms = float(args.get("delay_ms", 100.0))
    loss = float(args.get("loss_percent", 0.0))
    if delay_ms < 0 or not 0 <= loss <= 100:
        raise ConfigError(f"delay_ms {delay_ms} and loss_percent {loss} must be >= 0 (loss <= 100)")
    if not _chaos_mesh(secrets):
        raise UnsupportedFault(
            f"degrade-link on kubernetes needs Chaos Mesh: context {region.context!r} has no "
            f"CustomResourceDefinition {CHAOS_MESH_CRD} (install Chaos Mesh, or skip this fault)"
        )
    if session.store.find("degrade-link", name):
        raise FaultError(f"the link of region {name!r} is already degraded")
    chaos = f"gameday-degrade-{name}"
    # Chaos Mesh's `netem` action combines delay and loss; the selector is the region's.
    body = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "NetworkChaos",
        "metadata": {"name": chaos, "namespace": region.namespace, "labels": dict(MANAGED)},
        "spec": {
            "action": "netem",
            "mode": "all",
            "selector": {
                "namespaces": [region.namespace],
                "labelSelectors": dict(region.selector),
            },
            "delay": {"latency": f"{delay_ms:g}ms"},
            "loss": {"loss": f"{loss:g}"},
        },
    }
    entry = session.store.open("degrade-link", name, [name])
    entry.chaos.append(chaos)
    session.store.save()
    api = client.CustomObjectsApi(create_k8s_api_client(secrets))
    try:
        with _api_errors(f"create NetworkChaos {region.namespace}/{chaos}"):
            api.create_namespaced_custom_object(
                "chaos-mesh.org", "v1alpha1", region.namespace, "networkchaos", body
            )
    except FaultError:
        session.store.close([entry])
        raise
    entry.applied_at = time.time()
    session.store.save()
    details: dict[str, JsonValue] = {
        "namespace": region.namespace,
        "delay_ms": delay_ms,
        "loss_percent": loss,
        "networkchaos": chaos,
    }
    return session.record(
        FaultRecord("fault", "degrade-link", name, entry.id, entry.applied_at, details=details)
    )


def _restore_link(session: _Session, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("region", "")).strip()
    session.secrets(session.region(name))
    entries = session.store.find("degrade-link", name)
    if not entries:
        raise FaultError(f"the link of region {name!r} is not degraded")
    return _revert(session, "degrade-link", name, entries)


def _revert_all(session: _Session, args: dict[str, Any]) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    # Newest first, so a later fault built on an earlier one is undone before it.
    for entry in reversed(list(session.store.state.active)):
        records.append(_revert(session, entry.fault, entry.target, [entry]))
    return {"records": records}


_HANDLERS: dict[str, Callable[[_Session, dict[str, Any]], dict[str, Any]]] = {
    "kill-region": _kill,
    "restore-region": _restore,
    "partition": _partition,
    "heal": _heal,
    "corrupt-replica": _corrupt,
    "repair-replica": _repair,
    "degrade-link": _degrade,
    "restore-link": _restore_link,
    "revert-all": _revert_all,
}


def apply(
    op: str,
    args: dict[str, Any],
    configuration: dict[str, Any] | None,
    secrets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply or revert one fault on the regions' clusters; returns the fault record.

    `secrets` from the experiment are not used for the cluster: the context comes from
    the platform file, so an experiment cannot point a fault elsewhere. Raises
    ConfigError (refused before any request), UnsupportedFault, or FaultError (a
    request failed; what was already changed has been reverted).
    """
    handler = _HANDLERS.get(op)
    if handler is None:
        raise UnsupportedFault(f"fault {op!r} is not supported by the kubernetes driver")
    return handler(_Session(configuration), dict(args))


# --------------------------------------------------------------------------- plan
def plan(op: str, args: dict[str, Any], configuration: dict[str, Any] | None) -> list[str]:
    """What `apply` would touch, as lines for a human; only GET and LIST requests.

    Refuses what `apply` refuses, before any request.
    """
    session = _Session(configuration)
    if op not in _HANDLERS:
        raise UnsupportedFault(f"fault {op!r} is not supported by the kubernetes driver")
    if op == "kill-region":
        return _plan_kill(session, args)
    if op == "partition":
        _, _, _, planned = _partition_plan(session, args)
        return [
            f"create NetworkPolicy {session.target.region(r).namespace}/{p['metadata']['name']} "
            f"(context {session.target.region(r).context!r}, pods "
            f"{_label_selector(session.target.region(r).selector)})"
            for r, p in planned
        ]
    if op == "corrupt-replica":
        return _plan_corrupt(session, args)
    if op == "degrade-link":
        region = session.region(args.get("region"))
        present = _chaos_mesh(session.secrets(region))
        what = "create NetworkChaos" if present else "refuse (no Chaos Mesh CRD)"
        return [f"{what} gameday-degrade-{args.get('region')} in {region.namespace}"]
    active = session.store.state.active
    if op != "revert-all":
        region_arg = args.get("region")
        active = [a for a in active if region_arg is None or region_arg in a.regions]
    return [
        f"revert {a.fault} {a.target} (id {a.id}): remove {len(a.policies)} policies, "
        f"restore {len(a.scaled)} workloads, delete {len(a.pods)} pods"
        for a in reversed(active)
    ] or ["nothing to revert"]


def _plan_kill(session: _Session, args: dict[str, Any]) -> list[str]:
    name = str(args.get("region", "")).strip()
    region = session.region(name)
    secrets = session.secrets(region)
    pods = _count_pods(secrets, region)
    lines = [
        f"context {region.context!r}, namespace {region.namespace!r}: create NetworkPolicy "
        f"{policy} for pods {_label_selector(region.selector)} ({pods} pods match now)"
        for policy in (DENY_INGRESS, DENY_EGRESS)
    ]
    for kind, names in _workloads(region):
        for workload in names:
            replicas = _replicas(secrets, kind, workload, region.namespace)
            lines.append(f"scale {kind} {region.namespace}/{workload} from {replicas} to 0")
    return lines


def _count_pods(secrets: dict[str, str], region: KubernetesRegion) -> int:
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    core = client.CoreV1Api(create_k8s_api_client(secrets))
    with _api_errors(f"list pods in {region.namespace}"):
        found = core.list_namespaced_pod(
            region.namespace, label_selector=_label_selector(region.selector)
        )
    return len(found.items)


def _plan_corrupt(session: _Session, args: dict[str, Any]) -> list[str]:
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    name = str(args.get("region", "")).strip()
    region = session.region(name)
    what = str(args.get("what", "model"))
    damage = next((d for kind, d in region.replicas.items() if kind == what), None)
    if damage is None:
        raise ConfigError(
            f"{session.target.source}: regions.{name}.kubernetes.replicas.{what}: not configured"
        )
    core = client.CoreV1Api(create_k8s_api_client(session.secrets(region)))
    with _api_errors(f"list pods in {region.namespace}"):
        found = core.list_namespaced_pod(
            region.namespace, label_selector=_label_selector(damage.selector)
        )
    names = sorted(str(p.metadata.name) for p in found.items if p.metadata)
    pod = names[0] if names else "(no pod matches: the fault would fail)"
    return [
        f"exec {damage.command!r} in {region.namespace}/{pod} container {damage.container!r}",
        "repair deletes that pod so its controller recreates it",
    ]
