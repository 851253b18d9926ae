"""Pulumi mocks for the offline preview and the tests (one module for both).

`AtomicMocks` answers as the providers would: it fills in what a provider
computes (auto-generated Kubernetes names, instance addresses, ARNs, AMI
lookups, TLS material, random passwords) so the program never meets `None`
where a real deployment has a value. `RecordingMonitor` keeps every
registration with its options, so a test or the preview can look at the whole
graph the way the engine would see it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs

from components import tokens

SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SPECIAL_SIG_KEY = "4dabf18193072939515e22adb298388d"
RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET_TEXT = "[secret]"
ACCOUNT_ID = "123456789012"


def _digest(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _public_ip(name: str) -> str:
    # TEST-NET-3 (RFC 5737): documentation addresses, never routable.
    return str(ipaddress.IPv4Address("203.0.113.0") + int(_digest(name, length=4), 16) % 254 + 1)


def _fake_pem(label: str, name: str) -> str:
    return f"-----BEGIN {label}-----\nMOCK{_digest(label, name, length=40)}\n-----END {label}-----\n"


def _region() -> str:
    """The stack's aws:region: the real provider works in the region it is configured for."""
    return pulumi.Config("aws").get("region") or "us-east-1"


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{_region()}:{ACCOUNT_ID}:{resource}"


def _kubernetes_state(args: MockResourceArgs) -> dict[str, Any]:
    state = dict(args.inputs)
    metadata = dict(state.get("metadata") or {})
    if not metadata.get("name") and args.typ != tokens.KUBERNETES_PROVIDER:
        # The provider auto-names objects as <resource name>-<8 random characters>.
        metadata["name"] = f"{args.name}-{_digest(args.typ, args.name, length=8)}"
    if metadata:
        metadata.setdefault("uid", _digest("uid", args.typ, args.name, length=32))
        state["metadata"] = metadata
    if args.typ == tokens.SERVICE:
        spec = dict(state.get("spec") or {})
        if spec.get("clusterIP") != "None":
            spec.setdefault(
                "clusterIP", str(ipaddress.IPv4Address("10.254.0.10") + int(_digest(args.name, length=3), 16) % 60000)
            )
        state["spec"] = spec
        if spec.get("type") == "LoadBalancer":
            state["status"] = {"loadBalancer": {"ingress": [{"hostname": f"{args.name}.elb.example.com"}]}}
    return state


def _aws_state(args: MockResourceArgs) -> dict[str, Any]:
    state = dict(args.inputs)
    typ, name = args.typ, args.name
    ident = _digest(typ, name)
    service = typ.split(":")[1].split("/")[0]
    state.setdefault("arn", _arn(service, f"{typ.rsplit(':', 1)[-1].lower()}/{name}"))
    state.setdefault("tagsAll", state.get("tags", {}))
    if typ == tokens.INSTANCE:
        state.setdefault("privateIp", "10.0.1.250")
        state.setdefault("publicIp", _public_ip(name))
        state.setdefault("privateDns", f"ip-{state['privateIp'].replace('.', '-')}.ec2.internal")
        state.setdefault("publicDns", f"ec2-{state['publicIp'].replace('.', '-')}.{_region()}.compute.amazonaws.com")
        state.setdefault("primaryNetworkInterfaceId", f"eni-{ident}")
    elif typ in (tokens.IAM_ROLE, tokens.IAM_INSTANCE_PROFILE, tokens.IAM_POLICY):
        state.setdefault("name", f"{name}-{_digest(name, length=7)}")
        state["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:{typ.rsplit(':', 1)[-1].lower()}/{state['name']}"
        state.setdefault("uniqueId", f"AROA{ident.upper()}")
    elif typ == tokens.SSM_PARAMETER:
        state["arn"] = _arn("ssm", f"parameter{state.get('name', '/' + name)}")
        state.setdefault("version", 1)
    elif typ == tokens.VPC:
        state.setdefault("defaultSecurityGroupId", f"sg-{_digest('default', name)}")
        state.setdefault("mainRouteTableId", f"rtb-{_digest('main', name)}")
    elif typ == tokens.SUBNET:
        state.setdefault("availabilityZone", f"{_region()}a")
    elif typ == tokens.SECURITY_GROUP:
        state.setdefault("ownerId", ACCOUNT_ID)
    elif typ == tokens.EIP:
        state.setdefault("publicIp", _public_ip(name))
        state.setdefault("allocationId", f"eipalloc-{_digest('eip', name)}")
    elif typ == tokens.S3_BUCKET:
        # auto-named by the provider: <resource name>-<7 random characters>, lower case
        state.setdefault("bucket", f"{name}-{_digest('bucket', name, length=7)}")
        state["arn"] = f"arn:aws:s3:::{state['bucket']}"
    elif typ == tokens.IAM_USER:
        state.setdefault("name", f"{name}-{_digest(name, length=7)}")
        state["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:user{state.get('path', '/')}{state['name']}"
    elif typ == tokens.IAM_ACCESS_KEY:
        state.setdefault("secret", "mock-" + _digest("secret", name, length=35))
    elif typ == tokens.NAT_GATEWAY:
        state.setdefault("publicIp", _public_ip(name))
    elif typ == tokens.LOAD_BALANCER:
        # An NLB's DNS name: <name>-<hex>.elb.<region>.amazonaws.com
        lb_name = state.get("name") or name
        state.setdefault("dnsName", f"{lb_name}-{_digest('dns', name, length=16)}.elb.{_region()}.amazonaws.com")
    return state


def _tls_state(args: MockResourceArgs) -> dict[str, Any]:
    state = dict(args.inputs)
    if args.typ == tokens.PRIVATE_KEY:
        state.update(
            privateKeyPem=_fake_pem("PRIVATE KEY", args.name),
            privateKeyPemPkcs8=_fake_pem("PRIVATE KEY", args.name),
            publicKeyPem=_fake_pem("PUBLIC KEY", args.name),
            publicKeyOpenssh=f"ssh-ed25519 MOCK{_digest(args.name, length=40)}",
            publicKeyFingerprintSha256=f"SHA256:{_digest(args.name, length=43)}",
        )
    elif args.typ == tokens.CERT_REQUEST:
        state["certRequestPem"] = _fake_pem("CERTIFICATE REQUEST", args.name)
    elif args.typ in (tokens.SELF_SIGNED_CERT, tokens.LOCALLY_SIGNED_CERT):
        state.update(
            certPem=_fake_pem("CERTIFICATE", args.name),
            validityStartTime="2026-01-01T00:00:00Z",
            validityEndTime="2027-01-01T00:00:00Z",
            readyForRenewal=False,
        )
    return state


def _random_state(args: MockResourceArgs) -> dict[str, Any]:
    state = dict(args.inputs)
    length = int(state.get("length", 16))
    secret = ("Mock" + _digest("random", args.name, length=64))[:length]
    state.update(result=secret, bcryptHash="$2a$10$" + _digest("bcrypt", args.name, length=53))
    if args.typ == tokens.RANDOM_BYTES:
        raw = hashlib.sha256(f"random/{args.name}".encode()).digest()[:length]
        state.update(base64=base64.b64encode(raw).decode(), hex=raw.hex())
    return state


class AtomicMocks(pulumi.runtime.Mocks):
    """What the providers would compute, deterministically.

    `previous_outputs` are the stack outputs of the last update as the engine's readStackOutputs
    answers them (settings/load.py reads the set's record there): none, by default, as for a new stack.
    """

    def __init__(self, previous_outputs: Mapping[str, Any] | None = None) -> None:
        self.previous_outputs = dict(previous_outputs or {})

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        typ = args.typ
        if typ.startswith("kubernetes:") or typ == tokens.KUBERNETES_PROVIDER:
            state = _kubernetes_state(args)
            meta = state.get("metadata") or {}
            ident = f"{meta.get('namespace', '')}/{meta.get('name', args.name)}".lstrip("/")
            return ident, state
        if typ.startswith("aws:"):
            state = _aws_state(args)
            if typ == tokens.IAM_ACCESS_KEY:  # an access key's id is AKIA and 16 of A-Z, 2-7
                return "AKIA" + _digest(typ, args.name, length=16).upper().replace("0", "A").replace("1", "B").replace(
                    "8", "C").replace("9", "D"), state
            prefix = {
                tokens.INSTANCE: "i",
                tokens.VPC: "vpc",
                tokens.SUBNET: "subnet",
                tokens.SECURITY_GROUP: "sg",
                tokens.INTERNET_GATEWAY: "igw",
                tokens.ROUTE_TABLE: "rtb",
                tokens.NAT_GATEWAY: "nat",
                tokens.VPC_ENDPOINT: "vpce",
                tokens.INSTANCE_CONNECT_ENDPOINT: "eice",
            }.get(typ)
            ident = (
                f"{prefix}-{_digest(typ, args.name)}"
                if prefix
                else str(state["bucket"]) if typ == tokens.S3_BUCKET  # a bucket's id is its name
                else state.get("name") or f"{args.name}-{_digest(typ, args.name, length=8)}"
            )
            return ident, state
        if typ.startswith("tls:"):
            return _digest(typ, args.name, length=20), _tls_state(args)
        if typ.startswith("random:"):
            return _digest(typ, args.name, length=20), _random_state(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        token, inputs = args.token, dict(args.args)
        if token == tokens.READ_STACK_OUTPUTS:
            return {"name": inputs["name"], "outputs": self.previous_outputs, "secretOutputNames": []}, []
        if token == tokens.GET_AMI:
            pattern = next((f["values"][0] for f in inputs.get("filters", []) if f.get("name") == "name"), "image")
            name = pattern.replace("*", "20250101.0")
            return {
                "id": "ami-" + _digest("ami", pattern),
                "imageId": "ami-" + _digest("ami", pattern),
                "name": name,
                "architecture": "x86_64",
                "rootDeviceName": "/dev/sda1",
                "ownerId": (inputs.get("owners") or [""])[0],
                "creationDate": "2025-01-01T00:00:00.000Z",
                "mostRecent": True,
            }, []
        region = _region()
        if token == tokens.GET_AVAILABILITY_ZONES:
            return {
                "id": region,
                "names": [f"{region}{z}" for z in "abc"],
                "zoneIds": [f"{region[:2]}{region.split('-')[1][0]}{region[-1]}-az{n}" for n in (1, 2, 3)],
                "groupNames": [region],
            }, []
        if token == tokens.GET_REGION:
            return {"id": region, "name": region, "region": region, "endpoint": f"ec2.{region}.amazonaws.com"}, []
        if token == tokens.GET_CALLER_IDENTITY:
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/mock",
                "userId": "AIDAMOCK",
                "id": ACCOUNT_ID,
            }, []
        if token == tokens.GET_PARTITION:
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        if token == tokens.GET_SUBNET:
            return {
                "id": inputs.get("id", "subnet-mock"),
                "cidrBlock": "10.0.1.0/24",
                "vpcId": "vpc-mock",
                "availabilityZone": f"{_region()}a",
            }, []
        if token == tokens.GET_POLICY_DOCUMENT:
            return {"json": _policy_json(inputs), "id": _digest(token, str(inputs))}, []
        return {}, []


def _policy_json(inputs: dict[str, Any]) -> str:
    import json

    statements = []
    for st in inputs.get("statements", []):
        doc: dict[str, Any] = {"Effect": st.get("effect", "Allow"), "Action": st.get("actions", [])}
        if st.get("resources"):
            doc["Resource"] = st["resources"]
        if st.get("principals"):
            doc["Principal"] = {p["type"]: p["identifiers"] for p in st["principals"]}
        statements.append(doc)
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


# --------------------------------------------------------------------------
# The recorded graph
# --------------------------------------------------------------------------


def plain_value(value: Any) -> Any:
    """A deserialised property value with secrets shown as "[secret]" and references as URNs."""
    if isinstance(value, dict):
        sig = value.get(SPECIAL_SIG_KEY)
        if sig == SECRET_SIG:
            return SECRET_TEXT
        if sig == RESOURCE_SIG:
            return value.get("urn")
        if sig is not None and "value" in value:
            return plain_value(value["value"])
        return {k: plain_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_value(v) for v in value]
    if value == UNKNOWN:
        return "[unknown]"
    if isinstance(value, float) and value.is_integer():
        # protobuf Structs carry every number as a double; Kubernetes wants integers back.
        return int(value)
    return value


def _unwrap(value: Any) -> Any:
    """Like plain_value, but keeps secret values (for the mocks' own state)."""
    if isinstance(value, dict):
        if value.get(SPECIAL_SIG_KEY) is not None and "value" in value:
            return _unwrap(value["value"])
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


@dataclass
class Registration:
    urn: str
    id: str
    type: str
    name: str
    parent: str
    custom: bool
    provider: str
    inputs: dict[str, Any]
    options: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "id": self.id or None,
            "type": self.type,
            "name": self.name,
            "parent": self.parent or None,
            "custom": self.custom,
            "provider": self.provider or None,
            "inputs": self.inputs,
            "options": self.options,
        }


def _timeouts(request: Any) -> dict[str, str] | None:
    """The customTimeouts option as the engine receives it (create, update, delete), None when unset."""
    timeouts = request.customTimeouts
    given = {k: getattr(timeouts, k) for k in ("create", "update", "delete") if getattr(timeouts, k)}
    return given or None


class RecordingMonitor(MockMonitor):
    """A MockMonitor that keeps every registration, its options and registered outputs."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.by_urn: dict[str, Registration] = {}
        # MockMonitor gives every executor thread it runs in an event loop and never closes it.
        self.thread_loops: set[asyncio.AbstractEventLoop] = set()

    def close_thread_loops(self) -> None:
        """Close the loops the monitor's worker threads were given (left open, each one's
        finalizer may run after its self-pipe socket is gone and print a ValueError)."""
        for loop in self.thread_loops:
            if not loop.is_closed() and not loop.is_running():
                loop.close()
        self.thread_loops.clear()

    def _note_thread_loop(self) -> None:
        with contextlib.suppress(RuntimeError):  # a thread the monitor gave no loop
            self.thread_loops.add(asyncio.get_event_loop())

    def Invoke(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = super().Invoke(request)
        self._note_thread_loop()
        return response

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        self._note_thread_loop()
        raw = json_format.MessageToDict(request.object, preserving_proto_field_name=True)
        if "__provider" in raw:
            # A dynamic resource's provider, serialized by dill: bytes of no use to a reader of plan.json.
            raw["__provider"] = "[dynamic provider]"
        state = self.resources[response.urn].state if response.urn in self.resources else {}
        registration = Registration(
            urn=response.urn,
            id=response.id,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=bool(request.custom),
            provider=request.provider,
            inputs=plain_value(raw),
            options={
                "protect": bool(request.protect),
                "retainOnDelete": bool(request.retainOnDelete),
                "ignoreChanges": list(request.ignoreChanges),
                "dependsOn": sorted(request.dependencies),
                "deleteBeforeReplace": bool(request.deleteBeforeReplace),
                "replaceOnChanges": list(request.replaceOnChanges),
                "customTimeouts": _timeouts(request),
                "additionalSecretOutputs": list(request.additionalSecretOutputs),
            },
            state=_unwrap(dict(state)) if state else {},
        )
        self.registrations.append(registration)
        self.by_urn[registration.urn] = registration
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        outputs = json_format.MessageToDict(request.outputs, preserving_proto_field_name=True)
        if request.urn in self.by_urn:
            self.by_urn[request.urn].outputs = plain_value(outputs)
        return super().RegisterResourceOutputs(request)
