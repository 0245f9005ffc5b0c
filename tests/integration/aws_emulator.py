"""A moto server on 127.0.0.1 holding a two-region AWS estate, for the aws driver's tests.

moto keeps state only: no traffic flows, nothing fails a health check, no DNS fails
over. What it proves is that an action and its revert do the right thing to the estate.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT = "123456789012"  # the account moto answers for
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Platform region -> (AWS region, VPC CIDR).
REGIONS = {"us-east": ("us-east-1", "10.1.0.0/16"), "us-west": ("us-west-2", "10.2.0.0/16")}
TAG = "gameday-region"
START_TIMEOUT = 30.0


def loopback_only(url: str) -> str:
    """`url` if its host is a loopback address; raises otherwise (tests never leave the box)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RuntimeError(f"refusing AWS endpoint {url!r}: tests only talk to 127.0.0.1")
    return url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Moto:
    """A running moto server: its endpoint and the file its recorder writes."""

    endpoint: str
    recording: Path

    def post(self, path: str) -> None:
        request = urllib.request.Request(self.endpoint + path, data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def reset(self) -> None:
        """Forget every resource and every recorded call."""
        self.post("/moto-api/reset")
        self.post("/moto-api/recorder/reset-recording")

    def calls(self) -> list[tuple[str, str]]:
        """(service, action) of every AWS call since the last reset, in order."""
        found: list[tuple[str, str]] = []
        if not self.recording.exists():
            return found
        for line in self.recording.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if "/moto-api/" in entry["url"]:
                continue
            found.append(_call_of(entry))
        return found


def _call_of(entry: dict[str, Any]) -> tuple[str, str]:
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    scope = headers.get("authorization", "").split("Credential=")[-1].split("/")
    service = scope[3] if len(scope) > 3 else "?"
    target = headers.get("x-amz-target", "")
    if target:
        return service, target.split(".")[-1]
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    action = urllib.parse.parse_qs(body).get("Action", ["?"])[0]
    return service, action


@contextmanager
def moto_server(workdir: Path) -> Iterator[Moto]:
    """Start `moto_server` on a free 127.0.0.1 port with its recorder on; reaped on exit."""
    port = _free_port()
    endpoint = loopback_only(f"http://127.0.0.1:{port}")
    recording = workdir / "moto-recording.jsonl"
    env = {**os.environ, "MOTO_ENABLE_RECORDING": "True", "MOTO_RECORDER_FILEPATH": str(recording)}
    binary = Path(sys.executable).with_name("moto_server")
    log = (workdir / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/data.json", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto_server did not start; see {workdir / 'moto.log'}"
                    ) from None
                time.sleep(0.2)
        yield Moto(endpoint, recording)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@dataclass
class RegionEstate:
    """The ids of one platform region's resources."""

    aws_region: str
    vpc_id: str
    cidr: str
    subnets: dict[str, str] = field(default_factory=dict)  # AZ -> tagged subnet
    bystander_subnet: str = ""  # same VPC, untagged: no fault may touch it
    instances: dict[str, str] = field(default_factory=dict)  # AZ -> tagged instance
    bystander_instance: str = ""
    target_group_arn: str = ""
    asg: str = ""
    cluster: str = ""
    cluster_writer: str = ""
    cluster_reader: str = ""


def _client(service: str, aws_region: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(service, region_name=aws_region, endpoint_url=loopback_only(endpoint))


def build_region(name: str, endpoint: str) -> RegionEstate:
    """VPC, tagged subnets and instances in 2 AZs, an ALB and its target group, an ASG, Aurora."""
    aws_region, cidr = REGIONS[name]
    ec2 = _client("ec2", aws_region, endpoint)
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    estate = RegionEstate(aws_region, vpc, cidr)
    tags = [{"ResourceType": "subnet", "Tags": [{"Key": TAG, "Value": name}]}]
    base = cidr.split(".0.0/")[0]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for index, zone in enumerate((f"{aws_region}a", f"{aws_region}b")):
        subnet = ec2.create_subnet(
            VpcId=vpc,
            CidrBlock=f"{base}.{index}.0/24",
            AvailabilityZone=zone,
            TagSpecifications=tags,
        )["Subnet"]["SubnetId"]
        estate.subnets[zone] = subnet
        estate.instances[zone] = ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet,
            InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": TAG, "Value": name}]}],
        )["Instances"][0]["InstanceId"]
    estate.bystander_subnet = ec2.create_subnet(
        VpcId=vpc, CidrBlock=f"{base}.9.0/24", AvailabilityZone=f"{aws_region}a"
    )["Subnet"]["SubnetId"]
    estate.bystander_instance = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        SubnetId=estate.bystander_subnet,
        InstanceType="t3.micro",
    )["Instances"][0]["InstanceId"]
    elb = _client("elbv2", aws_region, endpoint)
    group = elb.create_target_group(
        Name=f"shop-{name}", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="instance"
    )
    estate.target_group_arn = group["TargetGroups"][0]["TargetGroupArn"]
    balancer = elb.create_load_balancer(
        Name=f"shop-{name}", Subnets=list(estate.subnets.values()), Type="application"
    )["LoadBalancers"][0]["LoadBalancerArn"]
    elb.create_listener(
        LoadBalancerArn=balancer,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": estate.target_group_arn}],
    )
    elb.register_targets(
        TargetGroupArn=estate.target_group_arn,
        Targets=[
            {"Id": i, "Port": 8080} for i in [*estate.instances.values(), estate.bystander_instance]
        ],
    )
    asg = _client("autoscaling", aws_region, endpoint)
    template = ec2.create_launch_template(
        LaunchTemplateName=f"shop-{name}",
        LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    estate.asg = f"shop-{name}"
    asg.create_auto_scaling_group(
        AutoScalingGroupName=estate.asg,
        LaunchTemplate={"LaunchTemplateId": template},
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=0,
        VPCZoneIdentifier=",".join(estate.subnets.values()),
    )
    # An operator's own suspension: the revert must leave it in place.
    asg.suspend_processes(AutoScalingGroupName=estate.asg, ScalingProcesses=["ScheduledActions"])
    rds = _client("rds", aws_region, endpoint)
    estate.cluster = f"shop-{name}"
    rds.create_db_cluster(
        DBClusterIdentifier=estate.cluster,
        Engine="aurora-postgresql",
        MasterUsername="gameday",
        MasterUserPassword="gameday-test-only",
    )
    for role in ("writer", "reader"):
        rds.create_db_instance(
            DBInstanceIdentifier=f"{estate.cluster}-{role}",
            DBClusterIdentifier=estate.cluster,
            Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.large",
        )
    estate.cluster_writer = f"{estate.cluster}-writer"
    estate.cluster_reader = f"{estate.cluster}-reader"
    return estate


def platform_doc(estate: dict[str, RegionEstate], account: str = ACCOUNT) -> dict[str, Any]:
    """A whole platform file naming the estate (other sections present, as in real files)."""
    return {
        "version": 1,
        "name": "shop-inference",
        "driver": "aws",
        "jurisdictions": {"us": {"regions": sorted(estate)}},
        "regions": {
            name: {
                "jurisdiction": "us",
                "aws": {
                    "region": e.aws_region,
                    "vpc_id": e.vpc_id,
                    "tags": {TAG: name},
                    "target_groups": [f"shop-{name}"],
                    "auto_scaling_groups": [e.asg],
                    "db_clusters": [e.cluster],
                },
            }
            for name, e in estate.items()
        },
        "traffic": {"base_url": "http://127.0.0.1:9"},
        "allow": {
            "hosts": ["http://127.0.0.1:9"],
            "aws": {
                "account_id": account,
                "regions": sorted(e.aws_region for e in estate.values()),
            },
        },
    }


def write_platform(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path
