"""Contract tests of the kubernetes driver against a recording fake API on 127.0.0.1.

They prove the requests the driver sends (order, bodies valid against the official
schema, reverts that undo what the fault changed) and that refusals happen before the
first request. They do not prove that a real cluster's network plugin enforces the
policies: see docs/kubernetes.md for running the drills on kind or k3d.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra import actions
from infra.errors import ConfigError, FaultError, UnsupportedFault
from infra.kubernetes import driver
from infra.types import read_events
from tests.contract.conftest import CORRUPT_MODEL, Rig, platform_doc

NS = "gameday-us-east"
APPS = f"/apis/apps/v1/namespaces/{NS}"
POLICIES = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"
KILL = [
    f"POST {POLICIES}",
    f"POST {POLICIES}",
    f"GET {APPS}/deployments/inference/scale",
    f"PATCH {APPS}/deployments/inference",
    f"GET {APPS}/deployments/router/scale",
    f"PATCH {APPS}/deployments/router",
    f"GET {APPS}/statefulsets/redis/scale",
    f"PATCH {APPS}/statefulsets/redis",
]
RESTORE = [
    f"DELETE {POLICIES}/chaostoolkit-deny-all-ingress",
    f"DELETE {POLICIES}/chaostoolkit-deny-all-egress",
    f"PATCH {APPS}/deployments/inference",
    f"PATCH {APPS}/deployments/router",
    f"PATCH {APPS}/statefulsets/redis",
]


def _replicas(rig: Rig, namespace: str = NS) -> dict[str, int]:
    cluster = rig.api.cluster
    return {
        f"{res}/{name}": obj["spec"]["replicas"]
        for (res, ns, name), obj in sorted(cluster.objects.items())
        if ns == namespace and res in ("deployments", "statefulsets")
    }


def _policy_enums_are_valid(policy: dict[str, Any]) -> None:
    spec = policy["spec"]
    assert set(spec["policyTypes"]) <= {"Ingress", "Egress"}
    assert spec["podSelector"]["matchLabels"], "a fault policy never selects every pod"
    for rule in spec.get("ingress", []) + spec.get("egress", []):
        for peer in rule.get("from", []) + rule.get("to", []):
            for expression in peer.get("namespaceSelector", {}).get("matchExpressions", []):
                assert expression["operator"] in {"In", "NotIn", "Exists", "DoesNotExist"}
        for port in rule.get("ports", []):
            assert port.get("protocol", "TCP") in {"TCP", "UDP", "SCTP"}


def _state(rig: Rig) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((rig.events.parent / driver.STATE_FILE).read_text())
    return data


def test_kill_region_cuts_the_network_first_then_scales_to_zero(rig: Rig) -> None:
    record = actions.kill_region("us-east", configuration=rig.configuration)

    assert rig.api.lines() == KILL
    posts = [r.body for r in rig.api.requests if r.method == "POST"]
    assert [p["metadata"]["name"] for p in posts] == [
        "chaostoolkit-deny-all-ingress",
        "chaostoolkit-deny-all-egress",
    ]
    for policy in posts:
        assert policy["spec"]["podSelector"] == {"matchLabels": {"gameday.dev/region": "us-east"}}
    for policy in posts:
        _policy_enums_are_valid(policy)
    assert posts[0]["spec"]["policyTypes"] == ["Ingress"]
    assert posts[1]["spec"]["policyTypes"] == ["Egress"]
    patches = [r for r in rig.api.requests if r.method == "PATCH"]
    assert {r.content_type for r in patches} == {"application/strategic-merge-patch+json"}
    assert [r.body for r in patches] == [{"spec": {"replicas": 0}}] * 3
    assert rig.api.invalid == []
    assert _replicas(rig) == {
        "deployments/inference": 0,
        "deployments/router": 0,
        "statefulsets/redis": 0,
    }
    # The other regions are untouched.
    assert _replicas(rig, "gameday-us-west")["deployments/inference"] == 3

    assert record["type"] == "fault"
    assert record["target"] == "us-east"
    assert record["details"]["scaled_to_zero"] == {
        "deployment/inference": 3,
        "deployment/router": 2,
        "statefulset/redis": 1,
    }
    assert record["details"]["jurisdiction"] == "us"
    [event] = read_events(rig.events)
    assert event.id == record["id"]
    assert event.applied_at == record["applied_at"]
    [active] = _state(rig)["active"]
    assert [s["replicas"] for s in active["scaled"]] == [3, 2, 1]


def test_restore_region_restores_the_counts_and_removes_the_policies(rig: Rig) -> None:
    fault = actions.kill_region("us-east", configuration=rig.configuration)
    revert = actions.restore_region("us-east", configuration=rig.configuration)

    assert rig.api.lines() == KILL + RESTORE
    restores = [r.body for r in rig.api.requests if r.method == "PATCH"][3:]
    assert restores == [{"spec": {"replicas": n}} for n in (3, 2, 1)]
    assert _replicas(rig) == {
        "deployments/inference": 3,
        "deployments/router": 2,
        "statefulsets/redis": 1,
    }
    assert rig.api.cluster.of("networkpolicies", NS) == []
    assert rig.api.invalid == []
    assert revert["type"] == "revert"
    assert revert["details"]["fault_ids"] == [fault["id"]]
    assert [e.type for e in read_events(rig.events)] == ["fault", "revert"]
    assert _state(rig)["active"] == []
    with pytest.raises(FaultError, match="'us-east' is not killed"):
        actions.restore_region("us-east", configuration=rig.configuration)


def test_a_second_kill_of_the_same_region_is_refused(rig: Rig) -> None:
    actions.kill_region("us-east", configuration=rig.configuration)
    sent = len(rig.api.requests)
    with pytest.raises(FaultError, match="already killed"):
        actions.kill_region("us-east", configuration=rig.configuration)
    assert len(rig.api.requests) == sent


def test_a_kill_that_fails_half_way_reverts_what_it_changed(rig: Rig) -> None:
    del rig.api.cluster.objects[("statefulsets", NS, "redis")]
    with pytest.raises(FaultError, match=r"statefulset gameday-us-east/redis.*404"):
        actions.kill_region("us-east", configuration=rig.configuration)
    assert rig.api.lines() == [
        *KILL[:6],
        f"GET {APPS}/statefulsets/redis/scale",
        *RESTORE[:4],
    ]
    assert _replicas(rig) == {"deployments/inference": 3, "deployments/router": 2}
    assert rig.api.cluster.of("networkpolicies", NS) == []
    assert _state(rig)["active"] == []
    assert not rig.events.exists()


def test_partition_excludes_same_cluster_peers_by_namespace_and_others_by_cidr(
    rig: Rig,
) -> None:
    record = actions.partition_regions(
        "us-east", "us-west,eu-west", configuration=rig.configuration
    )

    assert rig.api.lines() == [f"POST {POLICIES}", f"POST {POLICIES}"]
    ingress, egress = (r.body for r in rig.api.requests)
    _policy_enums_are_valid(ingress)
    _policy_enums_are_valid(egress)
    peers = [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "NotIn",
                        "values": ["gameday-us-west"],
                    }
                ]
            }
        },
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.20.0.0/16"]}},
    ]
    assert ingress["metadata"]["name"] == "gameday-partition-ingress"
    assert ingress["spec"]["ingress"] == [{"from": peers}]
    assert egress["metadata"]["name"] == "gameday-partition-egress"
    assert egress["spec"]["egress"] == [{"to": peers}]
    assert rig.api.invalid == []
    assert record["target"] == "us-east|us-west,eu-west"

    actions.heal_partition(configuration=rig.configuration)
    assert rig.api.lines()[2:] == [
        f"DELETE {POLICIES}/gameday-partition-ingress",
        f"DELETE {POLICIES}/gameday-partition-egress",
    ]
    assert rig.api.cluster.of("networkpolicies", NS) == []
    assert [e.type for e in read_events(rig.events)] == ["fault", "revert"]


def test_a_one_way_partition_creates_only_the_egress_policy(rig: Rig) -> None:
    actions.partition_regions(
        "us-east", "us-west", direction="a-to-b", configuration=rig.configuration
    )
    [policy] = [r.body for r in rig.api.requests]
    assert policy["spec"]["policyTypes"] == ["Egress"]
    # Same cluster only: no ipBlock, so traffic from outside the cluster still arrives.
    assert [list(p) for p in policy["spec"]["egress"][0]["to"]] == [["namespaceSelector"]]


def test_a_peer_in_another_cluster_without_cidrs_is_refused_before_any_request(
    rig: Rig,
) -> None:
    doc = platform_doc(rig.api.url)
    del doc["regions"]["eu-west"]["kubernetes"]["cidrs"]
    rig.write_platform(doc)
    with pytest.raises(ConfigError, match=r"regions\.eu-west\.kubernetes\.cidrs: required"):
        actions.partition_regions("us-east", "eu-west", configuration=rig.configuration)
    assert rig.api.requests == []


def test_corrupt_replica_execs_in_one_pod_and_repair_deletes_it(rig: Rig) -> None:
    record = actions.corrupt_replica("us-west", configuration=rig.configuration)

    pods = "/api/v1/namespaces/gameday-us-west/pods"
    assert rig.api.lines() == [f"GET {pods}", f"GET {pods}/inference-0/exec"]
    assert rig.api.requests[0].query["labelSelector"] == ["app.kubernetes.io/name=inference"]
    assert rig.api.cluster.execs == [
        {"pod": "inference-0", "container": "inference", "command": CORRUPT_MODEL}
    ]
    assert record["fault"] == "corrupt-model"
    assert record["details"]["pods"] == ["inference-0"]

    revert = actions.repair_replica("us-west", configuration=rig.configuration)
    assert rig.api.lines()[2:] == [f"DELETE {pods}/inference-0"]
    assert rig.api.cluster.get("pods", "gameday-us-west", "inference-0") is None
    assert revert["fault"] == "corrupt-model"
    assert revert["details"]["fault_ids"] == [record["id"]]


def test_corrupting_a_replica_the_platform_file_does_not_describe_is_refused(rig: Rig) -> None:
    with pytest.raises(ConfigError, match=r"regions\.us-west\.kubernetes\.replicas\.features"):
        actions.corrupt_replica("us-west", what="features", configuration=rig.configuration)
    assert rig.api.requests == []


def test_revert_all_undoes_every_fault_newest_first(rig: Rig) -> None:
    kill = actions.kill_region("us-east", configuration=rig.configuration)
    corrupt = actions.corrupt_replica("us-west", configuration=rig.configuration)
    sent = len(rig.api.requests)

    result = actions.revert_all(configuration=rig.configuration)

    assert [r["details"]["fault_ids"] for r in result["records"]] == [
        [corrupt["id"]],
        [kill["id"]],
    ]
    assert rig.api.lines()[sent:] == [
        "DELETE /api/v1/namespaces/gameday-us-west/pods/inference-0",
        *RESTORE,
    ]
    assert _replicas(rig)["deployments/inference"] == 3
    assert _state(rig)["active"] == []
    assert [e.type for e in read_events(rig.events)] == ["fault", "fault", "revert", "revert"]
    # Nothing left: a second rollback sends nothing and says so.
    assert actions.revert_all(configuration=rig.configuration) == {"records": []}
    assert len(rig.api.requests) == sent + 1 + len(RESTORE)


def test_revert_all_tolerates_a_policy_someone_already_removed(rig: Rig) -> None:
    actions.kill_region("us-east", configuration=rig.configuration)
    del rig.api.cluster.objects[("networkpolicies", NS, "chaostoolkit-deny-all-ingress")]
    [record] = actions.revert_all(configuration=rig.configuration)["records"]
    assert record["details"]["removed"] == [f"{NS}/chaostoolkit-deny-all-egress"]
    assert _replicas(rig)["statefulsets/redis"] == 1


def test_a_revert_that_fails_half_way_can_be_run_again(rig: Rig) -> None:
    actions.kill_region("us-east", configuration=rig.configuration)
    redis = rig.api.cluster.objects.pop(("statefulsets", NS, "redis"))
    with pytest.raises(FaultError, match=r"scale statefulset gameday-us-east/redis to 1.*404"):
        actions.restore_region("us-east", configuration=rig.configuration)
    assert len(_state(rig)["active"]) == 1  # kept: the revert is not done
    rig.api.cluster.objects[("statefulsets", NS, "redis")] = redis
    sent = len(rig.api.requests)
    revert = actions.restore_region("us-east", configuration=rig.configuration)
    # The policies are already gone (404, counted as undone); the counts are set again.
    assert rig.api.lines()[sent:] == RESTORE
    assert revert["details"]["removed"] == []
    assert _replicas(rig) == {
        "deployments/inference": 3,
        "deployments/router": 2,
        "statefulsets/redis": 1,
    }
    assert _state(rig)["active"] == []


def test_degrade_link_without_chaos_mesh_is_unsupported_and_changes_nothing(rig: Rig) -> None:
    with pytest.raises(UnsupportedFault, match="needs Chaos Mesh"):
        actions.degrade_link("us-east", configuration=rig.configuration)
    assert rig.api.lines() == [
        "GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/networkchaos.chaos-mesh.org"
    ]
    assert not (rig.events.parent / driver.STATE_FILE).exists() or _state(rig)["active"] == []


def test_degrade_link_with_chaos_mesh_creates_a_network_chaos_and_removes_it(rig: Rig) -> None:
    rig.api.cluster.add(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "networkchaos.chaos-mesh.org"},
            "spec": {
                "group": "chaos-mesh.org",
                "names": {"kind": "NetworkChaos", "plural": "networkchaos"},
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1alpha1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object"}},
                    }
                ],
            },
        }
    )
    assert (
        rig.api.check(rig.api.cluster.objects[("crds", "", "networkchaos.chaos-mesh.org")]) is None
    )
    actions.degrade_link("us-east", delay_ms=250, loss_percent=5, configuration=rig.configuration)
    chaos = f"/apis/chaos-mesh.org/v1alpha1/namespaces/{NS}/networkchaos"
    assert rig.api.lines()[1:] == [f"POST {chaos}"]
    body = rig.api.requests[1].body
    assert body["spec"]["delay"] == {"latency": "250ms"}
    assert body["spec"]["loss"] == {"loss": "5"}
    assert body["spec"]["selector"]["labelSelectors"] == {"gameday.dev/region": "us-east"}
    actions.restore_link("us-east", configuration=rig.configuration)
    assert rig.api.lines()[2:] == [f"DELETE {chaos}/gameday-degrade-us-east"]


def test_plan_only_reads(rig: Rig) -> None:
    lines = driver.plan("kill-region", {"region": "us-east"}, rig.configuration)
    assert lines[-3:] == [
        f"scale deployment {NS}/inference from 3 to 0",
        f"scale deployment {NS}/router from 2 to 0",
        f"scale statefulset {NS}/redis from 1 to 0",
    ]
    assert "(6 pods match now)" in lines[0]
    lines += driver.plan(
        "partition", {"side_a": ["us-east"], "side_b": ["eu-west"]}, rig.configuration
    )
    lines += driver.plan("corrupt-replica", {"region": "us-west"}, rig.configuration)
    assert "gameday-us-west/inference-0" in lines[-2]
    assert {r.method for r in rig.api.requests} == {"GET"}
    assert not any(r.path.endswith("/exec") for r in rig.api.requests)
    assert not rig.events.exists()


# --------------------------------------------------------------------------- safety
def _edit(rig: Rig, where: str, value: Any) -> None:
    doc = platform_doc(rig.api.url)
    node = doc
    *path, last = where.split(".")
    for key in path:
        node = node[key]
    node[last] = value
    rig.write_platform(doc)


@pytest.mark.parametrize(
    ("where", "value", "error"),
    [
        pytest.param(
            "regions.us-east.kubernetes.selector",
            {},
            r"platform\.yaml: regions\.us-east\.kubernetes\.selector: an empty selector",
            id="empty-selector",
        ),
        pytest.param(
            "regions.us-east.kubernetes.replicas.model.selector",
            {},
            r"regions\.us-east\.kubernetes\.replicas\.model\.selector: an empty selector",
            id="empty-replica-selector",
        ),
        pytest.param(
            "regions.us-east.kubernetes.namespace",
            "kube-system",
            r"regions\.us-east\.kubernetes\.namespace: 'kube-system' is not in "
            r"allow\.kubernetes\.namespaces",
            id="namespace-not-allowed",
        ),
        pytest.param(
            "regions.us-east.kubernetes.context",
            "prod-eu",
            r"regions\.us-east\.kubernetes\.context: 'prod-eu' is not in "
            r"allow\.kubernetes\.contexts",
            id="context-not-allowed",
        ),
        pytest.param(
            "allow.kubernetes.contexts",
            ["fake-us", "fake-eu", "nowhere"],
            None,
            id="unknown-context-allowed-but-unused",
        ),
    ],
)
def test_a_bad_target_is_refused_before_any_request(
    rig: Rig, where: str, value: Any, error: str | None
) -> None:
    _edit(rig, where, value)
    if error is None:
        # An allowed context the kubeconfig lacks is harmless until a region uses it.
        actions.kill_region("us-east", configuration=rig.configuration)
        assert rig.api.lines() == KILL
        return
    with pytest.raises(ConfigError, match=error):
        actions.kill_region("us-east", configuration=rig.configuration)
    assert rig.api.requests == []


def test_a_context_missing_from_the_kubeconfig_is_refused_before_any_request(
    rig: Rig,
) -> None:
    doc = platform_doc(rig.api.url)
    doc["regions"]["us-east"]["kubernetes"]["context"] = "kind-us-east"
    doc["allow"]["kubernetes"]["contexts"].append("kind-us-east")
    rig.write_platform(doc)
    with pytest.raises(
        ConfigError, match="has no context 'kind-us-east' \\(has: fake-eu, fake-us\\)"
    ):
        actions.kill_region("us-east", configuration=rig.configuration)
    assert rig.api.requests == []


def test_a_region_outside_the_platform_file_is_refused_before_any_request(rig: Rig) -> None:
    with pytest.raises(ConfigError, match=r"unknown region 'ap-south' \(known: eu-west"):
        actions.kill_region("ap-south", configuration=rig.configuration)
    assert rig.api.requests == []


def test_a_server_outside_the_allow_list_is_refused_before_any_request(rig: Rig) -> None:
    _edit(rig, "allow.kubernetes.servers", ["https://10.0.0.1:6443"])
    with pytest.raises(ConfigError, match=r"not in allow.kubernetes.servers"):
        actions.kill_region("us-east", configuration=rig.configuration)
    assert rig.api.requests == []


def test_no_kubeconfig_is_refused_instead_of_falling_back_to_localhost(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from kubernetes.config import kube_config

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"kubeconfig .*missing.* cannot be read"):
        actions.kill_region("us-east", configuration=rig.configuration)
    assert rig.api.requests == []


def test_a_kubeconfig_changed_after_the_client_was_imported_is_refused(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = rig.api.write_kubeconfig(tmp_path / "other", {"fake-us": "default"})
    monkeypatch.setenv("KUBECONFIG", str(other))
    with pytest.raises(ConfigError, match="KUBECONFIG changed after the client was imported"):
        actions.kill_region("us-east", configuration=rig.configuration)
    assert rig.api.requests == []


@pytest.mark.parametrize(
    ("configuration", "error"),
    [
        pytest.param({}, "gameday_platform_file is required", id="no-platform-file"),
        pytest.param(
            {"gameday_platform_file": "/nowhere/platform.yaml"},
            "cannot read platform file",
            id="missing-platform-file",
        ),
    ],
)
def test_a_missing_platform_file_is_refused(
    rig: Rig, configuration: dict[str, Any], error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        actions.kill_region(
            "us-east", configuration={"gameday_platform": "kubernetes", **configuration}
        )
    assert rig.api.requests == []


def test_an_unsupported_operation_is_refused(rig: Rig) -> None:
    with pytest.raises(UnsupportedFault, match="'melt-datacenter'"):
        driver.apply("melt-datacenter", {}, rig.configuration)
    assert rig.api.requests == []


# --------------------------------------------------------------------------- chaos run
def test_chaos_run_drives_the_driver_and_its_rollback(rig: Rig) -> None:
    """The Chaos Toolkit path: configuration keys, the action, the rollback, the journal."""
    import subprocess
    import sys

    import yaml

    experiment = {
        "version": "1.0.0",
        "title": "contract: kill us-east through chaos run, roll back",
        "description": "no load, no measurement: the requests only",
        "configuration": rig.configuration,
        "steady-state-hypothesis": {"title": "nothing to check", "probes": []},
        "method": [
            {
                "type": "action",
                "name": "kill-us-east",
                "provider": {
                    "type": "python",
                    "module": "infra.actions",
                    "func": "kill_region",
                    "arguments": {"region": "us-east"},
                },
            }
        ],
        "rollbacks": [
            {
                "type": "action",
                "name": "revert-every-fault",
                "provider": {"type": "python", "module": "infra.actions", "func": "revert_all"},
            }
        ],
    }
    path = rig.tmp / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment), encoding="utf-8")
    journal = rig.tmp / "journal.json"
    chaos = Path(sys.executable).with_name("chaos")
    done = subprocess.run(
        [
            str(chaos),
            "run",
            "--journal-path",
            str(journal),
            "--rollback-strategy",
            "always",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=rig.tmp,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(journal.read_text())
    assert result["status"] == "completed"
    assert [r["status"] for r in result["run"]] == ["succeeded"]
    assert [r["status"] for r in result["rollbacks"]] == ["succeeded"]
    assert rig.api.lines() == KILL + RESTORE
    assert rig.api.invalid == []
    assert [e.type for e in read_events(rig.events)] == ["fault", "revert"]


# --------------------------------------------------------------------------- least privilege
_RBAC_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/[^/]+)"
    r"(?:/namespaces/[^/]+)?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
_VERBS = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}


def _rbac(request: Any) -> tuple[str, str, str]:
    match = _RBAC_PATH.match(request.path)
    assert match, request.path
    group = "" if match["core"] else match["group"]
    resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
    if request.method == "GET":
        verb = "get" if match["name"] else "list"
    else:
        verb = _VERBS[request.method]
    return group, resource, verb


def _allows(rules: list[dict[str, Any]], need: tuple[str, str, str]) -> bool:
    group, resource, verb = need
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


def test_the_scheduled_drill_may_send_every_request_the_driver_sends_and_no_more(
    rig: Rig,
) -> None:
    from tests.contract.kustomize import build

    manifests = Path(driver.__file__).parent / "manifests"
    test_degrade_link_with_chaos_mesh_creates_a_network_chaos_and_removes_it(rig)
    actions.kill_region("us-east", configuration=rig.configuration)
    actions.partition_regions("us-west", "us-east", configuration=rig.configuration)
    actions.corrupt_replica("us-west", configuration=rig.configuration)
    actions.revert_all(configuration=rig.configuration)
    needed = {_rbac(r) for r in rig.api.requests}

    [role] = [
        o
        for o in build(manifests / "overlays/us-east")
        if o["kind"] == "Role" and o["metadata"]["name"] == "gameday-drill"
    ]
    [cluster_role] = [o for o in build(manifests / "global") if o["kind"] == "ClusterRole"]
    namespaced = {n for n in needed if n[1] != "customresourcedefinitions"}
    assert {n for n in needed if n not in namespaced} == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "get")
    }
    assert _allows(
        cluster_role["rules"], ("apiextensions.k8s.io", "customresourcedefinitions", "get")
    )
    for need in sorted(namespaced):
        assert _allows(role["rules"], need), need
    granted = {
        (g, res, v)
        for r in role["rules"]
        for g in r["apiGroups"]
        for res in r["resources"]
        for v in r["verbs"]
    }
    # The Role grants only what the requests use; websocket exec may be checked as
    # either get or create, depending on the API server's version.
    assert granted - namespaced == {("", "pods/exec", "create")}
