"""Bad input, as a careless or hostile user would type it: every case stops the preview with exit
status 2 and exactly one printable line naming the setting, the value and what is allowed, before
anything is registered or written. The valid edge cases next to them still pass.

Each case goes through `python -m tools.preview` (tools.preview.main) exactly as a user runs it:
--set as `pulumi config set`, --secret as `pulumi config set --secret`, --config-file for a stack
file, so the harness (what the CLI refuses) and the program (settings/load.py) are both covered.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components import tokens
from components.facts import (
    GUESTBOOK_OBJECT_NAMES,
    MYSQL_OBJECT_SUFFIXES,
    NAMESPACE_OBJECT_NAMES,
    SECURITY_GROUP_RULE_QUOTA,
)
from tests.conftest import PROJECT_DIR, STACKS
from tools import preview
from tools.harness.mocks import AtomicMocks, RecordingMonitor
from tools.harness.offline import Plan, run_program

DIGEST = "sha256:" + "0123456789abcdef" * 4
GOOD_PASSWORD = "Correct-Horse-Battery-9"


def stack_file(stack: str, *lines: str) -> str:
    """The stack's own file with `lines` in its config block, each replacing the stack's own line for
    its key (and that line's continuation lines), as a user editing the file would."""
    keys = {line.split(": ", 1)[0].rstrip(":") for line in lines if not line.startswith(" ")}
    kept: list[str] = []
    dropping = False
    for line in (PROJECT_DIR / "stacks" / f"Pulumi.{stack}.yaml").read_text().splitlines():
        if line.startswith("  ") and not line.startswith("    "):
            key = line.strip().split(": ", 1)[0].rstrip(":")
            dropping = key in keys or key.split(":", 1)[-1] in keys
        if not (dropping and line.startswith("  ")):
            kept.append(line)
    return "\n".join(kept) + "\n" + "".join(f"  {line}\n" for line in lines)


def last_line(stack: str, *lines: str) -> int:
    """The line number of the last line `stack_file` writes: where an added key sits."""
    return len(stack_file(stack, *lines).splitlines())


ALIASED = ("atomic-mysql:serviceCidr: &net 10.254.0.0/16", "atomic-mysql:podCidr: *net")


@dataclass(frozen=True)
class Bad:
    category: str
    setting: str  # the name the line must carry
    expected: str  # a fragment of the line: setting, value and what is allowed
    sets: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    stack: str = "dev"
    file: str | bytes | None = None  # a stack file's content, given with --config-file
    args: tuple[str, ...] = ()
    hidden: str | None = None  # a secret that must never be shown

    def argv(self, tmp_path: Path) -> list[str]:
        argv = ["--stack", self.stack, "--out", str(tmp_path / "build"), "--quiet", *self.args]
        for key, value in self.sets.items():
            argv += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
        for key, value in self.secrets.items():
            argv += ["--secret", f"{key}={value}"]
        if self.file is not None:
            path = tmp_path / f"Pulumi.{self.stack}.yaml"
            if isinstance(self.file, bytes):
                path.write_bytes(self.file)
            else:
                path.write_text(self.file)
            argv += ["--config-file", str(path)]
        return argv


def S(category: str, setting: str, expected: str, stack: str = "dev", **sets: Any) -> Bad:  # noqa: N802
    return Bad(category, setting, expected, sets=sets, stack=stack)


def K(category: str, setting: str, expected: str, sets: dict[str, Any], stack: str = "dev") -> Bad:  # noqa: N802
    """Keys that are not Python names (aws:region, typos with colons)."""
    return Bad(category, setting, expected, sets=sets, stack=stack)


def F(category: str, setting: str, expected: str, *lines: str, stack: str = "dev") -> Bad:  # noqa: N802
    return Bad(category, setting, expected, stack=stack, file=stack_file(stack, *lines))


def T(category: str, setting: str, expected: str, text: str | bytes, stack: str = "dev") -> Bad:  # noqa: N802
    return Bad(category, setting, expected, stack=stack, file=text)


def P(setting: str, expected: str, value: str, stack: str = "dev") -> Bad:  # noqa: N802
    return Bad("secrets", setting, expected, secrets={setting: value}, stack=stack,
               hidden=value if len(value) >= 6 else None)


FILE = "Pulumi.dev.yaml:"  # how a line from a stack file starts (the test's copy of it)
TOO_WEAK = "=[secret]: is too weak: must be 16 to 32 printable ASCII characters"
TWENTY_CIDRS = [f"198.51.{i}.0/24" for i in range(19)]
THREE_ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
MANY_SOURCES = [f"203.0.{i // 4}.{(i % 4) * 64}/26" for i in range(61)]

BAD: list[Bad] = [
    # ---- unknown keys: typos pass silently no more
    S("unknown keys", "minionCoutn", "atomic-mysql:minionCoutn=5: atomic-mysql has no setting minionCoutn: did you"
      " mean minionCount?", minionCoutn=5),
    S("unknown keys", "mysqlReplica", "did you mean mysqlReplicas?", mysqlReplica=5),
    S("unknown keys", "MinionCount", "atomic-mysql:MinionCount=5: atomic-mysql has no setting MinionCount: did you"
      " mean minionCount?", MinionCount=5),
    S("unknown keys", "ownr", "atomic-mysql:ownr=me: atomic-mysql has no setting ownr: did you mean owner?", ownr="me"),
    S("unknown keys", "enableCockpits", "did you mean enableCockpit?", enableCockpits="true"),
    S("unknown keys", "frobnicate", "atomic-mysql has no setting frobnicate: the settings are listed in Pulumi.yaml",
      frobnicate=1),
    K("unknown keys", "aws:regoin", "aws:regoin=us-east-1: the aws provider has no setting regoin: did you mean"
      " aws:region?", {"aws:regoin": "us-east-1"}),
    K("unknown keys", "aws:profle", "did you mean aws:profile?", {"aws:profle": "dev"}),
    K("unknown keys", "atomic-mysq:minionCount", "atomic-mysq:minionCount=5: no part of this program reads namespace"
      " atomic-mysq: did you mean atomic-mysql:minionCount?", {"atomic-mysq:minionCount": 5}),
    K("unknown keys", "atomicmysql:minionCout", "did you mean atomic-mysql:minionCount?",
      {"atomicmysql:minionCout": 5}),
    K("unknown keys", "gcp:project", "gcp:project=p: no part of this program reads namespace gcp",
      {"gcp:project": "p"}),
    K("unknown keys", "kubernetes:context", "kubernetes:context=prod: is never read: every Kubernetes resource uses"
      " the program's own provider (pulumi:disable-default-providers); use atomic-mysql:kubeContext",
      {"kubernetes:context": "prod"}, stack="local"),
    K("unknown keys", "kubernetes:kubeconfig", "use atomic-mysql:kubeconfig", {"kubernetes:kubeconfig": "~/.kube/x"}),
    K("unknown keys", "random:length", "random:length=5: the random provider has no setting length: its keys are:"
      " pluginDownloadURL, version",
      {"random:length": 5}),
    K("unknown keys", "tls:proxi", "did you mean tls:proxy?", {"tls:proxi": "{}"}),
    F("unknown keys", "minionCoutn", "atomic-mysql:minionCoutn=5: atomic-mysql has no setting minionCoutn: did you"
      " mean minionCount?", "atomic-mysql:minionCoutn: 5"),
    F("unknown keys", "aws:regoin", "did you mean aws:region?", "aws:regoin: us-west-2"),
    F("unknown keys", "minioncount", "atomic-mysql:minioncount=4: atomic-mysql has no setting minioncount: did you"
      " mean minionCount?", "minioncount: 4"),
    F("unknown keys", "atomic-mysqll:owner", "did you mean atomic-mysql:owner?", "atomic-mysqll:owner: me"),
    Bad("unknown keys", "mysqlRootPasword", "atomic-mysql:mysqlRootPasword=[secret]: atomic-mysql has no setting"
        " mysqlRootPasword: did you mean mysqlRootPassword?", secrets={"mysqlRootPasword": GOOD_PASSWORD},
        hidden=GOOD_PASSWORD),
    K("unknown keys", "a:b:c", "--set a:b:c is not a config key: expected <namespace>:<name>", {"a:b:c": 1}),
    K("unknown keys", ":minionCount", "--set :minionCount is not a config key", {":minionCount": 1}),
    F("unknown keys", "atomic-mysql:", "config atomic-mysql: is not a config key", "'atomic-mysql:': 3"),
    # ---- types: the setting, the value and the form, not just the type
    S("types", "masterCount", "atomic-mysql:masterCount=1.0: must be of type integer (Pulumi.yaml): a whole number,"
      " e.g. 3", masterCount="1.0"),
    S("types", "masterCount", "atomic-mysql:masterCount=yes: must be of type integer", masterCount="yes"),
    S("types", "masterCount", "atomic-mysql:masterCount=0x3: must be of type integer", masterCount="0x3"),
    S("types", "minionCount", "atomic-mysql:minionCount=1_000: must be of type integer", minionCount="1_000"),
    S("types", "minionCount", 'atomic-mysql:minionCount=" 2": must be of type integer', minionCount=" 2"),
    S("types", "minionCount", 'atomic-mysql:minionCount="": must be of type integer', minionCount=""),
    S("types", "masterCount", "atomic-mysql:masterCount=three: must be of type integer", masterCount="three"),
    S("types", "enableCockpit", "atomic-mysql:enableCockpit=yes: must be of type boolean (Pulumi.yaml): true or"
      " false", enableCockpit="yes"),
    S("types", "enableCockpit", "atomic-mysql:enableCockpit=1: must be of type boolean", enableCockpit="1"),
    S("types", "enableCockpit", "atomic-mysql:enableCockpit=True: must be of type boolean", enableCockpit="True"),
    S("types", "owner", 'atomic-mysql:owner=["a"]: must be of type string (Pulumi.yaml): text, not a list or a map',
      owner=["a"]),
    S("types", "adminCidrs", "atomic-mysql:adminCidrs=198.51.100.0/24: must be of type array<string> (Pulumi.yaml):"
      " a list of strings", adminCidrs="198.51.100.0/24"),
    S("types", "adminCidrs", 'atomic-mysql:adminCidrs="[1, 2]": must be a list of strings', adminCidrs=[1, 2]),
    S("types", "rootVolumeGb", "atomic-mysql:rootVolumeGb=30GB: must be of type integer", rootVolumeGb="30GB"),
    S("types", "masterCount", "atomic-mysql:masterCount=99999999999999999999: must be a whole number from 1 to 3",
      masterCount="99999999999999999999"),
    S("types", "mysqlReplicas", "atomic-mysql:mysqlReplicas=-1: must be a whole number from 1 to 9",
      mysqlReplicas=-1),
    F("types", "frontendHpaMin", FILE, "atomic-mysql:frontendHpaMin: {min: 2}"),
    # ---- YAML oddities: YAML 1.1 readings, tags, aliases, repeats
    F("yaml oddities", "enableCockpit", "atomic-mysql:enableCockpit=on: must be of type boolean",
      "atomic-mysql:enableCockpit: on"),
    F("yaml oddities", "masterCount", "atomic-mysql:masterCount=1e0: must be of type integer",
      "atomic-mysql:masterCount: 1e0"),
    F("yaml oddities", "masterCount", "atomic-mysql:masterCount=~: must be of type integer",
      "atomic-mysql:masterCount: ~"),
    F("yaml oddities", "minionCount", "atomic-mysql:minionCount=0o2: must be of type integer",
      "atomic-mysql:minionCount: 0o2"),
    F("yaml oddities", "enableCockpit", 'atomic-mysql:enableCockpit=TRUE: must be of type boolean',
      'atomic-mysql:enableCockpit: "TRUE"'),
    F("yaml oddities", "masterCount", f"Pulumi.dev.yaml:{last_line('dev', 'atomic-mysql:masterCount: !!int 3')}:"
      " config atomic-mysql:masterCount: a YAML tag (!!int) is not used in stack files: write the plain value",
      "atomic-mysql:masterCount: !!int 3"),
    F("yaml oddities", "podCidr", f"Pulumi.dev.yaml:{last_line('dev', *ALIASED)}: config atomic-mysql:podCidr: a YAML"
      " alias (*name) is not used in stack files: write the value out", *ALIASED),
    T("yaml oddities", "minionCount", "Pulumi.dev.yaml:4: config atomic-mysql:minionCount is set twice (first on line"
      " 2): keep one", "config:\n  atomic-mysql:minionCount: 2\n  aws:region: us-east-1\n"
      "  atomic-mysql:minionCount: 3\n"),
    T("yaml oddities", "minionCount", "Pulumi.dev.yaml:3: config atomic-mysql:minionCount is set twice",
      "config:\n  atomic-mysql:minionCount: 2\n  minionCount: 3\n"),
    F("yaml oddities", "adminCidrs", "atomic-mysql:adminCidrs=[[\"198.51.100.0/24\"]]: must be of type array<string>",
      "atomic-mysql:adminCidrs: [[198.51.100.0/24]]"),
    F("yaml oddities", "masterCount", "atomic-mysql:masterCount=[\"1\"]: must be of type integer",
      "atomic-mysql:masterCount: [1]"),
    F("yaml oddities", "mysqlVersion", "atomic-mysql:mysqlVersion=8.40: allowed values for mysqlEngine=mysql are 8.4,"
      " 8.0", "atomic-mysql:mysqlVersion: 8.40"),
    F("yaml oddities", "owner", 'atomic-mysql:owner={"team":"x"}: must be of type string', "atomic-mysql:owner:",
      "    team: x"),
    T("yaml oddities", "a config key", "Pulumi.dev.yaml:2: a config key is a name such as minionCount, not a list",
      "config:\n  ? [a, b]\n  : 1\n"),
    # ---- malformed files: one line naming the file and the line
    T("malformed files", "config:", "Pulumi.dev.yaml:2: config: must be a map of settings (key: value, one per line),"
      " not a list", "config:\n  - atomic-mysql:minionCount: 2\n"),
    T("malformed files", "Pulumi.dev.yaml", "Pulumi.dev.yaml:2: not valid YAML: while scanning for the next token:"
      " found character '\\t' that cannot start any token", "config:\n\tatomic-mysql:minionCount: 2\n"),
    T("malformed files", "Pulumi.dev.yaml", "Pulumi.dev.yaml:3: not valid YAML: while parsing a flow sequence:"
      " expected ',' or ']'",
      "config:\n  atomic-mysql:adminCidrs: [198.51.100.0/24\n  atomic-mysql:minionCount: 2\n"),
    T("malformed files", "Pulumi.dev.yaml", "Pulumi.dev.yaml:1: a stack file is a mapping with a config: block, not a"
      " list", "- config\n- minionCount\n"),
    T("malformed files", "Pulumi.dev.yaml", "Pulumi.dev.yaml:1: a stack file is a mapping with a config: block, not a"
      " single value", "just some words\n"),
    T("malformed files", "Pulumi.dev.yaml", "Pulumi.dev.yaml: not UTF-8 text (byte 10 is not)",
      b"config:\n  \xff\xfe: 1\n"),
    T("malformed files", "Pulumi.dev.yaml", "Pulumi.dev.yaml:3: a stack file's top-level keys are plain names, each"
      " once", "config: {}\nencryptionsalt: x\nconfig: {}\n"),
    T("malformed files", "secretprovider", "Pulumi.dev.yaml:1: secretprovider is not a stack file key (the CLI would"
      " ignore it): did you mean secretsprovider?", "secretprovider: awskms://alias/x?region=us-east-1\nconfig: {}\n"),
    T("malformed files", "Config", "Pulumi.dev.yaml:1: Config is not a stack file key (the CLI would ignore it): did"
      " you mean config?", "Config:\n  atomic-mysql:minionCount: 2\n"),
    T("malformed files", "config:", "Pulumi.dev.yaml:1: config: must be a map of settings (key: value, one per line),"
      " not a single value", "config: hello\n"),
    T("malformed files", "Pulumi.dev.yaml", "Pulumi.dev.yaml:3: not valid YAML: while scanning a quoted scalar:"
      " found unexpected end of stream",
      'config:\n  atomic-mysql:owner: "dev-team\n'),
    T("malformed files", "Pulumi.dev.yaml", "not valid YAML: expected a single document in the stream: but found"
      " another document",
      "config: {}\n---\nconfig: {}\n"),
    T("malformed files", "Pulumi.dev.yaml", "Pulumi.dev.yaml:2: not valid YAML: mapping values are not allowed here",
      "config:\n  atomic-mysql:owner: a: b\n"),
    Bad("malformed files", "--config-file", "--config-file /nonexistent/Pulumi.dev.yaml: no such file",
        args=("--config-file", "/nonexistent/Pulumi.dev.yaml")),
    Bad("malformed files", "stack", "no stack nope: stacks/Pulumi.nope.yaml does not exist (stacks: dev, local,"
        " prod, staging)", stack="nope"),
    # ---- injection into names, tags, CIDRs and the values files and annotations are built from
    S("injection", "clusterName", 'atomic-mysql:clusterName="atomic;rm -rf /": must be an RFC 1123 label',
      clusterName="atomic;rm -rf /"),
    S("injection", "clusterName", 'atomic-mysql:clusterName=$(id): must be an RFC 1123 label', clusterName="$(id)"),
    S("injection", "mysqlName", 'atomic-mysql:mysqlName="mysql\\nkind: Secret": must be an RFC 1123 label',
      mysqlName="mysql\nkind: Secret"),
    S("injection", "namespace", "atomic-mysql:namespace=ns`id`: must be an RFC 1123 label", namespace="ns`id`"),
    S("injection", "namespace", "atomic-mysql:namespace=../etc: must be an RFC 1123 label", namespace="../etc"),
    S("injection", "mysqlStorageClass", 'atomic-mysql:mysqlStorageClass="gp3; rm": must be a StorageClass name',
      mysqlStorageClass="gp3; rm"),
    S("injection", "mysqlStorageClass", "atomic-mysql:mysqlStorageClass=GP3: must be a StorageClass name",
      mysqlStorageClass="GP3", stack="local"),
    S("injection", "kubeContext", 'atomic-mysql:kubeContext="ctx\\x1b[2J": must be the name of a context',
      kubeContext="ctx\x1b[2J", renderYamlTo="", stack="local"),
    S("injection", "renderYamlTo", "atomic-mysql:renderYamlTo=../../etc: must be a relative directory inside the"
      " project", renderYamlTo="../../etc", stack="local"),
    S("injection", "renderYamlTo", "atomic-mysql:renderYamlTo=/etc/cron.d: must be a relative directory",
      renderYamlTo="/etc/cron.d", stack="local"),
    S("injection", "renderYamlTo", 'atomic-mysql:renderYamlTo="out;rm -rf ~": must be a relative directory',
      renderYamlTo="out;rm -rf ~", stack="local"),
    S("injection", "keyName", 'atomic-mysql:keyName="my key": must be an EC2 key pair name', keyName="my key"),
    S("injection", "keyName", 'atomic-mysql:keyName="clé": must be an EC2 key pair name', keyName="clé"),
    S("injection", "keyName", "atomic-mysql:keyName=k$(id): must be an EC2 key pair name", keyName="k$(id)"),
    S("injection", "owner", 'atomic-mysql:owner="team\\nSecret: x": must be 1-128 characters',
      owner="team\nSecret: x"),
    S("injection", "owner", "atomic-mysql:owner=<script>: must be 1-128 characters", owner="<script>"),
    S("injection", "owner", 'atomic-mysql:owner="tëam": must be 1-128 characters', owner="tëam"),
    S("injection", "owner", 'atomic-mysql:owner="team\\x1b[31m": must be 1-128 characters', owner="team\x1b[31m"),
    S("injection", "adminCidrs", 'atomic-mysql:adminCidrs="198.51.100.0/24; curl evil": must be an IPv4 CIDR',
      adminCidrs=["198.51.100.0/24; curl evil"]),
    S("injection", "adminCidrs", 'atomic-mysql:adminCidrs="198.51.100.0/24\\n": must be an IPv4 CIDR',
      adminCidrs=["198.51.100.0/24\n"]),
    S("injection", "vpcCidr", 'atomic-mysql:vpcCidr="10.0.0.0/16 && id": must be an IPv4 CIDR',
      vpcCidr="10.0.0.0/16 && id"),
    S("injection", "podCidr", "atomic-mysql:podCidr=10.244.0.0/16': must be an IPv4 CIDR", podCidr="10.244.0.0/16'"),
    S("injection", "kubernetesVersion", 'atomic-mysql:kubernetesVersion="1.32\\nKUBE_ALLOW_PRIV=1": allowed values'
      " are 1.31, 1.32, 1.33", kubernetesVersion="1.32\nKUBE_ALLOW_PRIV=1"),
    S("injection", "masterInstanceType", 'atomic-mysql:masterInstanceType="t3.medium\\nrunas": must be an EC2'
      " instance type", masterInstanceType="t3.medium\nrunas"),
    S("injection", "changeCause", 'atomic-mysql:changeCause="deploy\\nx-injected: 1": must be one line of at most'
      " 1024 printable characters", changeCause="deploy\nx-injected: 1"),
    S("injection", "ingressBandwidth", 'atomic-mysql:ingressBandwidth="10M\\n": must not begin or end with a space,'
      " tab or line break", ingressBandwidth="10M\n"),
    S("injection", "rolloutMaxSurge", "atomic-mysql:rolloutMaxSurge=25%;: must be a whole number or a percentage",
      rolloutMaxSurge="25%;"),
    S("injection", "amiId", 'atomic-mysql:amiId="ami-0123456789abcdef0 ; x": must be an AMI id',
      amiId="ami-0123456789abcdef0 ; x"),
    S("injection", "existingVpcId", "atomic-mysql:existingVpcId=vpc-123$(x): must be a VPC id",
      existingVpcId="vpc-123$(x)"),
    S("injection", "availabilityZone", "atomic-mysql:availabilityZone=us-east-1a;id: must be a zone of aws:region"
      " us-east-1", availabilityZone="us-east-1a;id"),
    S("injection", "fedoraRelease", "atomic-mysql:fedoraRelease=4.2e1: must be of type integer",
      fedoraRelease="4.2e1"),
    S("injection", "mysqlName", 'atomic-mysql:mysqlName="\\u202emysql": must be an RFC 1123 label',
      mysqlName="\u202emysql"),
    # ---- one line, always: escaped and cut short
    S("escaping", "clusterName", "... (500 characters, ", clusterName="a" * 500),
    S("escaping", "namespace", 'atomic-mysql:namespace="shop\\r": must not begin or end with a space',
      namespace="shop\r"),
    S("escaping", "owner", 'atomic-mysql:owner=" dev-team": must not begin or end with a space', owner=" dev-team"),
    S("escaping", "changeCause", 'atomic-mysql:changeCause="\\x07": must be one line', changeCause="\x07"),
    S("escaping", "changeCause", 'atomic-mysql:changeCause="x\\x7f": must be one line', changeCause="x\x7f"),
    S("escaping", "changeCause", 'atomic-mysql:changeCause="line\\u2028break": must be one line',
      changeCause="line\u2028break"),
    K("escaping", "minionCount", '--set "minionCount\\n" is not a config key', {"minionCount\n": 5}),
    S("escaping", "mysqlStorageSize", 'atomic-mysql:mysqlStorageSize="10Gi\\x00": must be a Kubernetes quantity',
      mysqlStorageSize="10Gi\x00"),
    # ---- regions and zones
    K("regions", "aws:region", "aws:region=mars: must be an AWS region name", {"aws:region": "mars"}),
    K("regions", "aws:region", "aws:region=us-east-9: must be an AWS region name, one of the",
      {"aws:region": "us-east-9"}),
    K("regions", "aws:region", "aws:region=us-eats-1: must be an AWS region name, one of the 46 the AWS provider"
      " knows, e.g. us-east-1 (pulumi config set aws:region ...); did you mean us-east-1?",
      {"aws:region": "us-eats-1"}),
    K("regions", "aws:region", 'aws:region="us-east-1\\n": must be an AWS region name',
      {"aws:region": "us-east-1\n"}),
    S("regions", "availabilityZone", "atomic-mysql:availabilityZone=us-west-2a: must be a zone of aws:region"
      " us-east-1, e.g. us-east-1a, or empty", availabilityZone="us-west-2a"),
    S("regions", "availabilityZone", "atomic-mysql:availabilityZone=us-east-1: must be a zone of aws:region",
      availabilityZone="us-east-1"),
    S("regions", "availabilityZone", "atomic-mysql:availabilityZone=us-east-1aa: must be a zone",
      availabilityZone="us-east-1aa"),
    S("regions", "availabilityZones", 'atomic-mysql:availabilityZones=us-west-2a: must be zones of aws:region'
      " us-east-1, e.g. us-east-1a", availabilityZones=["us-west-2a"]),
    S("regions", "availabilityZones", "atomic-mysql:availabilityZones=us-east-1-bos-1a: must be zones of aws:region",
      availabilityZones=["us-east-1a", "us-east-1-bos-1a"]),
    S("regions", "availabilityZones", 'atomic-mysql:availabilityZones=["us-east-1a","us-east-1a"]: must not name a'
      " zone twice", availabilityZones=["us-east-1a", "us-east-1a"]),
    S("regions", "availabilityZones", '"us-east-1d","us-eas... (92 characters, 32 not shown): at most 6 zones',
      availabilityZones=[f"us-east-1{z}" for z in "abcdefg"]),
    S("contradictions", "availabilityZones", 'atomic-mysql:availabilityZones=["us-east-1a","us-east-1b"]:'
      " masterCount=3 needs one zone or at least 3: one master per zone", masterCount=3,
      availabilityZones=["us-east-1a", "us-east-1b"]),
    S("contradictions", "availabilityZone", "atomic-mysql:availabilityZone=us-east-1a: set availabilityZones or"
      " availabilityZone, not both", availabilityZones=["us-east-1a"], availabilityZone="us-east-1a"),
    # ---- networks that cannot work
    S("networks", "vpcCidr", "atomic-mysql:vpcCidr=10.0.0.0/8: AWS allows a block from /16 to /28",
      vpcCidr="10.0.0.0/8"),
    S("networks", "vpcCidr", "atomic-mysql:vpcCidr=10.0.0.0/29: AWS allows a block from /16 to /28",
      vpcCidr="10.0.0.0/29"),
    S("networks", "vpcCidr", "atomic-mysql:vpcCidr=169.254.0.0/16: must be private (RFC 1918) address space",
      vpcCidr="169.254.0.0/16", subnetCidr="169.254.1.0/24"),
    S("networks", "vpcCidr", "atomic-mysql:vpcCidr=224.0.0.0/16: must be private", vpcCidr="224.0.0.0/16"),
    S("networks", "vpcCidr", "atomic-mysql:vpcCidr=8.8.0.0/16: must be private", vpcCidr="8.8.0.0/16"),
    S("networks", "vpcCidr", "atomic-mysql:vpcCidr=0.0.0.0/0: AWS allows a block from /16 to /28",
      vpcCidr="0.0.0.0/0"),
    S("networks", "vpcCidr", "atomic-mysql:vpcCidr=10.0.0.1/16: must be an IPv4 CIDR with its prefix and no host"
      " bits set", vpcCidr="10.0.0.1/16"),
    S("networks", "subnetCidr", "atomic-mysql:subnetCidr=10.0.1.0/32: AWS allows a block from /16 to /28",
      subnetCidr="10.0.1.0/32"),
    S("networks", "subnetCidr", "atomic-mysql:subnetCidr=10.0.1.0/29: AWS allows a block", subnetCidr="10.0.1.0/29"),
    S("networks", "subnetCidr", "atomic-mysql:subnetCidr=10.1.0.0/24: must lie inside vpcCidr 10.0.0.0/16",
      subnetCidr="10.1.0.0/24"),
    S("networks", "podCidr", "atomic-mysql:podCidr=169.254.0.0/16: must be private address space",
      podCidr="169.254.0.0/16"),
    S("networks", "podCidr", "atomic-mysql:podCidr=8.0.0.0/8: must be private address space", podCidr="8.0.0.0/8"),
    S("networks", "podCidr", "atomic-mysql:podCidr=10.244.0.0/25: must be /24 or larger", podCidr="10.244.0.0/25"),
    S("networks", "serviceCidr", "atomic-mysql:serviceCidr=10.96.0.0/11: must be /12 (kube-apiserver's largest) to"
      " /28", serviceCidr="10.96.0.0/11"),
    S("networks", "serviceCidr", "atomic-mysql:serviceCidr=10.254.0.0/29: must be /12", serviceCidr="10.254.0.0/29"),
    S("networks", "serviceCidr", "atomic-mysql:serviceCidr=10.0.128.0/20: must not overlap vpcCidr",
      serviceCidr="10.0.128.0/20"),
    S("networks", "serviceCidr", "atomic-mysql:serviceCidr=10.244.0.0/16: must not overlap podCidr",
      serviceCidr="10.244.0.0/16"),
    S("networks", "adminCidrs", "atomic-mysql:adminCidrs=198.51.100.0/24: is listed twice: list each CIDR once",
      adminCidrs=["198.51.100.0/24", "198.51.100.0/24"]),
    S("networks", "adminCidrs", "atomic-mysql:adminCidrs=127.0.0.0/8: is a loopback range", adminCidrs=["127.0.0.0/8"]),
    S("networks", "adminCidrs", "atomic-mysql:adminCidrs=224.0.0.0/4: is a multicast range",
      adminCidrs=["224.0.0.0/4"]),
    S("networks", "adminCidrs", "atomic-mysql:adminCidrs=169.254.0.0/16: is a link-local range",
      adminCidrs=["169.254.0.0/16"]),
    S("networks", "adminCidrs", "atomic-mysql:adminCidrs=0.0.0.0/0: 0.0.0.0/0 opens admin ports to the internet",
      adminCidrs=["0.0.0.0/0"]),
    S("networks", "adminCidrs", "atomic-mysql:adminCidrs=198.51.100.7: must be an IPv4 CIDR with its prefix",
      adminCidrs=["198.51.100.7"]),
    S("networks", "adminCidrs", "atomic-mysql:adminCidrs=[]: clusterMode=aws needs at least the CIDR", adminCidrs=[]),
    # By address space, not by prefix: the internet in two halves, and a public block wider than a /16.
    S("networks", "adminCidrs", 'adminCidrs=["0.0.0.0/1","128.0.0.0/1"]: together are the whole internet',
      adminCidrs=["0.0.0.0/1", "128.0.0.0/1"]),
    S("networks", "adminCidrs", "together open the admin ports to 131,072 public addresses, more than the 65,536",
      adminCidrs=["198.50.0.0/15"]),
    S("networks", "adminCidrs", "together open the admin ports to 98,304 public addresses",
      adminCidrs=["198.51.0.0/16", "203.0.0.0/17", "10.0.0.0/8"]),
    S("networks", "adminCidrs", "lists 19 CIDRs; with 3 rules each (sshFromAdminCidrs, enableCockpit, enableCadvisor,"
      f" enableNodePorts) at most 18 fit AWS's {SECURITY_GROUP_RULE_QUOTA} inbound rules", adminCidrs=TWENTY_CIDRS,
      sshFromAdminCidrs="true"),
    S("networks", "frontendSourceCidrs", "lists 61 CIDRs; the load balancer's group holds at most 60 inbound rules",
      adminCidrs=["198.51.100.0/24"], frontendSourceCidrs=MANY_SOURCES, stack="prod"),
    S("networks", "frontendSourceCidrs", "atomic-mysql:frontendSourceCidrs=everyone: must be an IPv4 CIDR",
      frontendSourceCidrs=["everyone"], stack="prod"),
    S("networks", "frontendSourceCidrs", "atomic-mysql:frontendSourceCidrs=0.0.0.0/0: is listed twice",
      frontendSourceCidrs=["0.0.0.0/0", "0.0.0.0/0"], stack="prod"),
    S("networks", "minionCount", "atomic-mysql:minionCount=300: subnetCidr 10.0.1.0/24 and podCidr 10.244.0.0/16"
      " leave room for at most 242 minions", minionCount=300),
    S("networks", "minionCount", "atomic-mysql:minionCount=3: subnetCidr 10.0.1.0/28", subnetCidr="10.0.1.0/28",
      minionCount=3),
    S("networks", "vpcCidr", "atomic-mysql:vpcCidr=10.88.0.0/16: must not overlap podman's bridge",
      enableCadvisor="true", vpcCidr="10.88.0.0/16", subnetCidr="10.88.1.0/24"),
    # Zones take consecutive blocks of the first one's size: each must fit, and private ones clear the public ones.
    S("networks", "subnetCidr", "atomic-mysql:subnetCidr=10.0.255.0/24: must leave room inside vpcCidr 10.0.0.0/16"
      " for 3 zone blocks of its size", subnetCidr="10.0.255.0/24", masterCount=3, minionCount=3,
      availabilityZones=THREE_ZONES),
    S("networks", "privateSubnetCidr", "atomic-mysql:privateSubnetCidr=10.0.2.0/24: its zone block 10.0.2.0/24"
      " overlaps the public zone blocks of subnetCidr (10.0.1.0/24, 10.0.2.0/24, 10.0.3.0/24)", privateNodes="true",
      apiLoadBalancer="true", privateSubnetCidr="10.0.2.0/24", masterCount=3, minionCount=3,
      availabilityZones=THREE_ZONES),
    S("networks", "privateSubnetCidr", "atomic-mysql:privateSubnetCidr=10.1.0.0/22: must lie inside vpcCidr"
      " 10.0.0.0/16", privateNodes="true", apiLoadBalancer="true", privateSubnetCidr="10.1.0.0/22"),
    S("networks", "privateSubnetCidr", "atomic-mysql:privateSubnetCidr=10.0.16.0/29: AWS allows a block from /16 to"
      " /28", privateNodes="true", apiLoadBalancer="true", privateSubnetCidr="10.0.16.0/29"),
    S("networks", "minionCount", "atomic-mysql:minionCount=100: privateSubnetCidr 10.0.16.0/27 (3 zones) and podCidr"
      " 10.244.0.0/16 leave room for at most 60 minions", privateNodes="true", apiLoadBalancer="true",
      privateSubnetCidr="10.0.16.0/27", masterCount=3, minionCount=100, availabilityZones=THREE_ZONES),
    S("contradictions", "privateNodes", "atomic-mysql:privateNodes=true: private nodes have no public address, so"
      " kubectl and `pulumi up` reach the API only through its load balancer: set apiLoadBalancer=true, or"
      " privateNodes=false", privateNodes="true"),
    S("contradictions", "existingSubnetId", "atomic-mysql:existingSubnetId=subnet-0123456789abcdef0: an existing"
      " subnet is one zone of public nodes", existingVpcId="vpc-0123456789abcdef0",
      existingSubnetId="subnet-0123456789abcdef0", masterCount=3, minionCount=3, availabilityZones=THREE_ZONES),
    S("types", "natGateways", "atomic-mysql:natGateways=two: allowed values are perZone, single", privateNodes="true",
      apiLoadBalancer="true", natGateways="two"),
    # ---- quantities
    S("quantities", "mysqlStorageSize", "atomic-mysql:mysqlStorageSize=1Ei: must be a Kubernetes quantity from 1Gi to"
      " 16Ti", mysqlStorageSize="1Ei"),
    S("quantities", "mysqlStorageSize", "atomic-mysql:mysqlStorageSize=17Ti: must be a Kubernetes quantity from 1Gi"
      " to 16Ti", mysqlStorageSize="17Ti"),
    S("quantities", "mysqlStorageSize", "atomic-mysql:mysqlStorageSize=10GB: must be a Kubernetes quantity",
      mysqlStorageSize="10GB"),
    S("quantities", "mysqlStorageSize", "atomic-mysql:mysqlStorageSize=0: must be a Kubernetes quantity",
      mysqlStorageSize="0"),
    S("quantities", "mysqlMemoryRequest", "atomic-mysql:mysqlMemoryRequest=1Ei: must be a Kubernetes quantity from"
      " 256Mi to 4Ti", mysqlMemoryRequest="1Ei"),
    S("quantities", "mysqlMemoryLimit", "atomic-mysql:mysqlMemoryLimit=5Ti: must be a Kubernetes quantity",
      mysqlMemoryLimit="5Ti"),
    S("quantities", "mysqlCpuRequest", "atomic-mysql:mysqlCpuRequest=100000: must be a CPU quantity above zero and"
      " at most 448", mysqlCpuRequest="100000"),
    S("quantities", "mysqlCpuRequest", "atomic-mysql:mysqlCpuRequest=0m: must be a CPU quantity above zero",
      mysqlCpuRequest="0m"),
    S("quantities", "mysqlCpuRequest", "atomic-mysql:mysqlCpuRequest=-1: must be a CPU quantity above zero",
      mysqlCpuRequest="-1", stack="local"),
    S("quantities", "mysqlCpuLimit", "atomic-mysql:mysqlCpuLimit=1e3: must be a CPU quantity", mysqlCpuLimit="1e3"),
    S("quantities", "frontendMemoryLimit", "atomic-mysql:frontendMemoryLimit=16Mi: must be a Kubernetes quantity"
      " from 32Mi", frontendMemoryLimit="16Mi"),
    S("quantities", "egressBandwidth", "atomic-mysql:egressBandwidth=0M: must be a rate from 1k to 1000000G",
      egressBandwidth="0M"),
    S("quantities", "ingressBandwidth", "atomic-mysql:ingressBandwidth=10mbps: must be a rate",
      ingressBandwidth="10mbps"),
    S("quantities", "egressBandwidth", "atomic-mysql:egressBandwidth=2000000G: must be a rate from 1k to 1000000G",
      egressBandwidth="2000000G"),
    S("quantities", "rolloutMaxSurge", "atomic-mysql:rolloutMaxSurge=150%: must be a whole number or a percentage",
      rolloutMaxSurge="150%"),
    S("quantities", "rolloutMaxUnavailable", "atomic-mysql:rolloutMaxUnavailable=-1: must be a whole number or a"
      " percentage", rolloutMaxUnavailable="-1"),
    S("quantities", "rootVolumeGb", "atomic-mysql:rootVolumeGb=5000: must be a whole number from 20 to 1024",
      rootVolumeGb=5000),
    S("quantities", "redisReplicas", "atomic-mysql:redisReplicas=0: must be a whole number from 1 to 20",
      redisReplicas=0),
    S("quantities", "corednsReplicas", "atomic-mysql:corednsReplicas=11: must be a whole number from 1 to 10",
      corednsReplicas=11),
    S("quantities", "progressDeadlineSeconds", "atomic-mysql:progressDeadlineSeconds=-5: must be a whole number from"
      " 1 to 86400", progressDeadlineSeconds=-5),
    S("quantities", "masterCount", "atomic-mysql:masterCount=2: must be odd (etcd needs a majority)", masterCount=2),
    S("quantities", "minionCount", "atomic-mysql:minionCount=0: must be a whole number from 1 to 500", minionCount=0),
    S("quantities", "frontendNodePort", "atomic-mysql:frontendNodePort=8080: must be a whole number from 30000 to"
      " 32767", frontendNodePort=8080, stack="prod"),
    # ---- images
    S("images", "mysqlImage", "atomic-mysql:mysqlImage=postgres:16: the server image for mysqlEngine=mysql"
      " mysqlVersion=8.4 must be a mysql image (named mysql, from any registry), e.g. mysql:8.4.6",
      mysqlImage="postgres:16"),
    S("images", "mysqlImage", "atomic-mysql:mysqlImage=mariadb:11.4.8: the server image for mysqlEngine=mysql"
      " mysqlVersion=8.4 must be a mysql image", mysqlImage="mariadb:11.4.8"),
    S("images", "mysqlImage", "atomic-mysql:mysqlImage=mysql:8.0.43: the server image for mysqlEngine=mysql"
      " mysqlVersion=8.4 must be mysql 8.4: its tag must start with 8.4", mysqlImage="mysql:8.0.43"),
    S("images", "mysqlImage", "atomic-mysql:mysqlImage=mysql:8.40: the server image", mysqlImage="mysql:8.40"),
    S("images", "mysqlImage", "atomic-mysql:mysqlImage=mysql: must be an image pinned by tag or digest",
      mysqlImage="mysql"),
    S("images", "mysqlImage", "atomic-mysql:mysqlImage=mysql:latest: must be an image pinned",
      mysqlImage="mysql:latest"),
    S("images", "mysqlBackupImage", "atomic-mysql:mysqlBackupImage=mariadb:11.4.8: the clone/backup image for"
      " mysqlEngine=mysql mysqlVersion=8.4 must be a percona-xtrabackup image", mysqlBackupImage="mariadb:11.4.8"),
    S("images", "mysqlBackupImage", "atomic-mysql:mysqlBackupImage=percona/percona-xtrabackup:8.0.35-34.1: the"
      " clone/backup image for mysqlEngine=mysql mysqlVersion=8.4 must be percona-xtrabackup 8.4",
      mysqlBackupImage="percona/percona-xtrabackup:8.0.35-34.1"),
    S("images", "mysqlBackupImage", "atomic-mysql:mysqlBackupImage=percona/percona-xtrabackup:8.4.0-4.1: the"
      " clone/backup image for mysqlEngine=mariadb mysqlVersion=11.4 must be a mariadb image",
      mysqlBackupImage="percona/percona-xtrabackup:8.4.0-4.1", stack="local"),
    S("images", "mysqlImage", "atomic-mysql:mysqlImage=mariadb:10.11.14: the server image for mysqlEngine=mariadb"
      " mysqlVersion=11.4 must be mariadb 11.4", mysqlImage="mariadb:10.11.14", stack="local"),
    S("images", "frontendImage", "atomic-mysql:frontendImage=redis:latest: must be an image pinned by tag or digest",
      frontendImage="redis:latest"),
    S("images", "redisPrimaryImage", "atomic-mysql:redisPrimaryImage=redis: must be an image pinned",
      redisPrimaryImage="redis"),
    S("images", "redisReplicaImage", "atomic-mysql:redisReplicaImage=Redis:7: must be an image pinned",
      redisReplicaImage="Redis:7"),
    S("images", "frontendImage", "atomic-mysql:frontendImage=gb-frontend@sha256:abc: must be an image pinned",
      frontendImage="gb-frontend@sha256:abc"),
    S("images", "frontendImage", "atomic-mysql:frontendImage=https://registry.example.com/x:1: must be an image",
      frontendImage="https://registry.example.com/x:1"),
    S("images", "frontendImage", 'atomic-mysql:frontendImage="gb frontend:v5": must be an image',
      frontendImage="gb frontend:v5"),
    S("images", "redisPrimaryImage", "atomic-mysql:redisPrimaryImage=redis:7/extra: must be an image pinned",
      redisPrimaryImage="redis:7/extra"),
    # ---- contradictions: both settings named
    S("contradictions", "mysqlName", "atomic-mysql:mysqlName=frontend: frontend is already a Guestbook object's name"
      " with guestbookEnabled=true", mysqlName="frontend"),
    S("contradictions", "mysqlName", "atomic-mysql:mysqlName=redis-leader: redis-leader is already a Guestbook"
      " object's name with guestbookEnabled=true", mysqlName="redis-leader"),
    S("contradictions", "mysqlName", "atomic-mysql:mysqlName=guestbook-redis: guestbook-redis is already",
      mysqlName="guestbook-redis", stack="local"),
    S("contradictions", "mysqlName", "atomic-mysql:mysqlName=default-deny: default-deny is the name of one of the "
      "namespace's own NetworkPolicies", mysqlName="default-deny", guestbookEnabled="false"),
    S("contradictions", "mysqlName", "atomic-mysql:mysqlName=allow-cluster-dns: allow-cluster-dns is the name of one",
      mysqlName="allow-cluster-dns"),
    S("contradictions", "mysqlAntiAffinity", "atomic-mysql:mysqlAntiAffinity=hard: with mysqlReplicas=3 needs as"
      " many minions, but minionCount=2", mysqlAntiAffinity="hard"),
    S("contradictions", "mysqlAntiAffinity", "with mysqlReplicas=7 needs as many minions, but minionCount=6",
      mysqlReplicas=7, mysqlPdbMaxUnavailable=1, stack="prod"),
    S("contradictions", "renderYamlTo", "atomic-mysql:renderYamlTo=rendered/dev: is used only with"
      " clusterMode=existing", renderYamlTo="rendered/dev"),
    S("contradictions", "kubeContext", "atomic-mysql:kubeContext=prod-admin: is used only with clusterMode=existing",
      kubeContext="prod-admin"),
    Bad("contradictions", "kubeconfig", "atomic-mysql:kubeconfig=[secret]: is used only with clusterMode=existing",
        secrets={"kubeconfig": "apiVersion: v1\nkind: Config\n"}),
    S("contradictions", "kubeContext", "atomic-mysql:kubeContext=ctx: renderYamlTo=rendered/local writes files and"
      " contacts no cluster", kubeContext="ctx", stack="local"),
    Bad("contradictions", "kubeconfig", "atomic-mysql:kubeconfig=[secret]: renderYamlTo=rendered/local writes files",
        secrets={"kubeconfig": "apiVersion: v1\nkind: Config\n"}, stack="local", hidden="kind: Config"),
    S("contradictions", "frontendReplicas", "atomic-mysql:frontendReplicas=8: exceeds frontendHpaMax=6 with"
      " frontendHpaEnabled=true", frontendHpaEnabled="true", frontendReplicas=8),
    S("contradictions", "frontendHpaMin", "atomic-mysql:frontendHpaMin=5: must not exceed frontendHpaMax (2)",
      frontendHpaEnabled="true", frontendHpaMin=5, frontendHpaMax=2, frontendReplicas=2),
    S("contradictions", "changeCause", "(2000 characters, ", changeCause="x" * 2000),
    S("contradictions", "rolloutMaxUnavailable", "rolloutMaxSurge and rolloutMaxUnavailable cannot both be 0",
      rolloutMaxSurge="0", rolloutMaxUnavailable="0%"),
    S("contradictions", "progressDeadlineSeconds", "atomic-mysql:progressDeadlineSeconds=30: must be greater than"
      " minReadySeconds (60)", minReadySeconds=60, progressDeadlineSeconds=30),
    S("contradictions", "mysqlStorageClass", "atomic-mysql:mysqlStorageClass=fast-ssd: clusterMode=aws gives the"
      " MySQL data volumes their own class: gp3-mysql", mysqlStorageClass="fast-ssd", stack="staging"),
    # The data volumes' gp3 class: AWS's ranges, the pinned driver's cap, and the ratios to the size.
    S("contradictions", "mysqlStorageClass", "atomic-mysql:mysqlStorageClass=gp3: clusterMode=aws gives the MySQL"
      " data volumes their own class: gp3-mysql", mysqlStorageClass="gp3", stack="staging"),
    S("ranges", "mysqlVolumeIops", "atomic-mysql:mysqlVolumeIops=2999: must be a whole number from 3000 to 16000; gp3"
      " takes up to 80000, the pinned EBS CSI driver v1.47.0 requests at most 16000", mysqlVolumeIops=2999),
    S("ranges", "mysqlVolumeIops", "atomic-mysql:mysqlVolumeIops=20000: must be a whole number from 3000 to 16000",
      mysqlVolumeIops=20000, stack="prod"),
    S("ranges", "mysqlVolumeThroughput", "atomic-mysql:mysqlVolumeThroughput=124: must be a whole number of MiB/s"
      " from 125 to 2000 (gp3's range)", mysqlVolumeThroughput=124),
    S("ranges", "mysqlVolumeThroughput", "atomic-mysql:mysqlVolumeThroughput=2001: must be a whole number of MiB/s"
      " from 125", mysqlVolumeThroughput=2001, stack="prod"),
    S("contradictions", "mysqlVolumeIops", "atomic-mysql:mysqlVolumeIops=4000: gp3 allows at most 500 IOPS per GiB"
      " (3000 at any size): a 5 GiB volume takes at most 3000 (mysqlStorageSize=5Gi)", mysqlVolumeIops=4000),
    S("contradictions", "mysqlVolumeIops", "atomic-mysql:mysqlVolumeIops=12000: gp3 allows at most 500 IOPS per GiB"
      " (3000 at any size): a 20 GiB volume takes at most 10000 (mysqlStorageSize=20Gi)", mysqlVolumeIops=12000,
      stack="staging"),
    S("contradictions", "mysqlVolumeThroughput", "atomic-mysql:mysqlVolumeThroughput=1000: gp3 allows at most 0.25"
      " MiB/s per provisioned IOPS: 3000 IOPS allow at most 750 MiB/s (1000 needs 4000 IOPS)",
      mysqlVolumeThroughput=1000),
    S("contradictions", "mysqlVolumeThroughput", "atomic-mysql:mysqlVolumeThroughput=1200: gp3 allows at most 0.25"
      " MiB/s per provisioned IOPS: 4000 IOPS allow at most 1000 MiB/s (1200 needs 4800 IOPS)",
      mysqlVolumeIops=4000, mysqlVolumeThroughput=1200, stack="prod"),
    # The clone path and the applier.
    S("ranges", "mysqlCloneThreads", "atomic-mysql:mysqlCloneThreads=33: must be a whole number from 0 to 32",
      mysqlCloneThreads=33),
    S("ranges", "mysqlCloneThreads", "atomic-mysql:mysqlCloneThreads=-1: must be a whole number from 0 to 32",
      mysqlCloneThreads=-1),
    S("ranges", "etcdBackupIntervalMinutes", "atomic-mysql:etcdBackupIntervalMinutes=7: allowed values are 0 (no"
      " backups), 5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440", etcdBackupIntervalMinutes=7),
    S("ranges", "etcdBackupIntervalMinutes", "atomic-mysql:etcdBackupIntervalMinutes=-60: allowed values are 0",
      etcdBackupIntervalMinutes=-60),
    S("ranges", "etcdBackupRetentionDays", "atomic-mysql:etcdBackupRetentionDays=0: must be a whole number from 1 to"
      " 3650", etcdBackupRetentionDays=0),
    S("ranges", "mysqlReplicaApplyThreads", "atomic-mysql:mysqlReplicaApplyThreads=0: must be a whole number from 1"
      " to 64", mysqlReplicaApplyThreads=0, stack="local"),
    S("ranges", "mysqlReplicaApplyThreads", "atomic-mysql:mysqlReplicaApplyThreads=65: must be a whole number from 1"
      " to 64", mysqlReplicaApplyThreads=65),
    S("quantities", "mysqlCloneMemoryLimit", "atomic-mysql:mysqlCloneMemoryLimit=128Mi: must be a Kubernetes quantity"
      " from 256Mi to 4Ti", mysqlCloneMemoryLimit="128Mi"),
    S("contradictions", "mysqlCloneCpuLimit", "atomic-mysql:mysqlCloneCpuLimit=100m: must be at least"
      " mysqlCloneCpuRequest (250m)", mysqlCloneCpuLimit="100m"),
    S("quantities", "mysqlSidecarCpuRequest", "atomic-mysql:mysqlSidecarCpuRequest=0: must be a CPU quantity above"
      " zero", mysqlSidecarCpuRequest="0", stack="local"),
    S("quantities", "mysqlSidecarMemoryRequest", "atomic-mysql:mysqlSidecarMemoryRequest=64Mi: must be a Kubernetes"
      " quantity from 128Mi to 4Ti", mysqlSidecarMemoryRequest="64Mi"),
    S("contradictions", "enableMetricsServer", "atomic-mysql:enableMetricsServer=false: frontendHpaEnabled=true needs"
      " metrics-server", enableMetricsServer="false", stack="prod"),
    S("contradictions", "mysqlMemoryLimit", "atomic-mysql:mysqlMemoryLimit=256Mi: must be at least mysqlMemoryRequest"
      " (512Mi)", mysqlMemoryLimit="256Mi"),
    S("contradictions", "existingSubnetId", 'atomic-mysql:existingSubnetId="": existingVpcId and existingSubnetId must'
      " be set together", existingVpcId="vpc-0123456789abcdef0"),
    # A drain leaves a majority serving, so that a zone's loss on top of it still leaves pods to read from.
    S("contradictions", "mysqlPdbMaxUnavailable", "atomic-mysql:mysqlPdbMaxUnavailable=2: must leave a majority of"
      " the 3 pods (mysqlReplicas) available: a whole number from 1 to 1", mysqlPdbMaxUnavailable=2),
    S("contradictions", "mysqlPdbMaxUnavailable", "atomic-mysql:mysqlPdbMaxUnavailable=3: must leave a majority of"
      " the 5 pods (mysqlReplicas) available: a whole number from 1 to 2", mysqlPdbMaxUnavailable=3, stack="prod"),
    S("contradictions", "mysqlPdbMaxUnavailable", "atomic-mysql:mysqlPdbMaxUnavailable=2: must leave one of the 2"
      " pods (mysqlReplicas) available: a whole number from 1 to 1", mysqlPdbMaxUnavailable=2, mysqlReplicas=2),
    S("contradictions", "mysqlVersion", "atomic-mysql:mysqlVersion=8.4: allowed values for mysqlEngine=mariadb are"
      " 11.4, 10.11", mysqlEngine="mariadb", mysqlVersion="8.4"),
    S("contradictions", "namespace", "atomic-mysql:namespace=kube-system: the workload gets its own namespace",
      namespace="kube-system"),
    # ---- secrets: never in plain text, never weak, never shown
    Bad("secrets", "mysqlRootPassword", "atomic-mysql:mysqlRootPassword=[secret]: is stored in plain text: encrypt it"
        " with `pulumi config set --secret --stack dev mysqlRootPassword` (it prompts for the value), and treat the"
        " old value as leaked", sets={"mysqlRootPassword": "hunter2hunter2hunter2"}, hidden="hunter2"),
    F("secrets", "mysqlRootPassword", "atomic-mysql:mysqlRootPassword=[secret]: is stored in plain text: encrypt it"
      " with `pulumi config set --secret --stack dev mysqlRootPassword`", "atomic-mysql:mysqlRootPassword: hunter2"),
    F("secrets", "mysqlReplicationPassword", "encrypt it with `pulumi config set --secret --stack staging"
      " mysqlReplicationPassword`", "mysqlReplicationPassword: Tr0ub4dor&3-long-enough", stack="staging"),
    F("secrets", "kubeconfig", "atomic-mysql:kubeconfig=[secret]: is stored in plain text: encrypt it with `pulumi"
      " config set --secret --stack local kubeconfig < path/to/kubeconfig`",
      "atomic-mysql:kubeconfig: |", "    apiVersion: v1", "    kind: Config", stack="local"),
    F("secrets", "mysqlRootPassword", "atomic-mysql:mysqlRootPassword=[secret]: is encrypted and the offline preview"
      " cannot decrypt it (pulumi preview does): give it for this run with --secret mysqlRootPassword=...",
      "atomic-mysql:mysqlRootPassword:", "    secure: v1:bzTfJl4IRVFb9hqI:pWFaDaug9O6jdGibQ2VtnJZHr7WTjjpYFsQ="),
    P("mysqlRootPassword", "atomic-mysql:mysqlRootPassword=[secret]: is too short: must be 16 to 32 printable ASCII",
      "x"),
    P("mysqlRootPassword", "atomic-mysql:mysqlRootPassword" + TOO_WEAK, "aaaaaaaaaaaaaaaaaaaa"),
    P("mysqlRootPassword", "atomic-mysql:mysqlRootPassword" + TOO_WEAK, "12345678901234567"),
    P("mysqlRootPassword", "atomic-mysql:mysqlRootPassword" + TOO_WEAK, "abababababababababab"),
    P("mysqlReplicationPassword", "atomic-mysql:mysqlReplicationPassword=[secret]: is too long",
      "Aa1-" + "x7Q" * 11),
    P("mysqlBackupPassword", "atomic-mysql:mysqlBackupPassword=[secret]: contains a line break or NUL",
      "first-Line-1234\nsecond-line-5678"),
    P("mysqlVerifyPassword", "atomic-mysql:mysqlVerifyPassword=[secret]: contains a line break or NUL",
      "Nul-in-the-middle\x00-1234"),
    P("mysqlRootPassword", "atomic-mysql:mysqlRootPassword=[secret]: must not be empty; unset it (pulumi config rm"
      " mysqlRootPassword) to generate one", ""),
    P("mysqlRootPassword", "atomic-mysql:mysqlRootPassword=[secret]: contains a space, a control or a non-ASCII"
      " character", "pass word With Spaces 123"),
    P("mysqlRootPassword", "contains a space, a control or a non-ASCII character", "pässwörd-Lang-12345"),
    P("mysqlVerifyPassword", "contains a space, a control or a non-ASCII character", "Escape-\x1b[31m-12345678"),
    Bad("secrets", "kubeconfig", "atomic-mysql:kubeconfig=[secret]: must be the text of a kubeconfig file",
        secrets={"kubeconfig": "  "}, sets={"renderYamlTo": ""}, stack="local"),
    # ---- backups, archive and restore (issue 16)
    S("contradictions", "mysqlBackupBucket", "atomic-mysql:mysqlBackupBucket=my-bucket: is for clusterMode=existing:"
      " the aws cluster builds its own bucket", mysqlBackupEnabled="true", mysqlBackupBucket="my-bucket"),
    S("contradictions", "mysqlRestoreFrom", "atomic-mysql:mysqlRestoreFrom=20261201T031700Z: needs"
      " mysqlBackupEnabled=true", mysqlRestoreFrom="20261201T031700Z"),
    S("contradictions", "mysqlRestorePrefix", "is read only by a restore: set mysqlRestoreFrom too",
      mysqlBackupEnabled="true", mysqlRestorePrefix="prod/mysql"),
    S("contradictions", "mysqlRestoreBucket", "atomic-mysql:mysqlRestoreBucket=prod-backups: is read only by a"
      " restore", mysqlBackupEnabled="true", mysqlRestoreBucket="prod-backups"),
    S("types", "mysqlRestoreBucket", "atomic-mysql:mysqlRestoreBucket=10.0.0.1: must be an S3 bucket name",
      mysqlBackupEnabled="true", mysqlRestoreFrom="20261201T031700Z", mysqlRestoreBucket="10.0.0.1"),
    S("contradictions", "mysqlBackupBucket", "is required with mysqlBackupEnabled=true in clusterMode=existing",
      stack="local", mysqlBackupEnabled="true"),
    S("types", "mysqlBackupSchedule", "atomic-mysql:mysqlBackupSchedule=@daily: must be a cron schedule of 5 fields",
      mysqlBackupEnabled="true", mysqlBackupSchedule="@daily"),
    S("types", "mysqlBackupSchedule", "field minute '61' must use digits 0-59", mysqlBackupEnabled="true",
      mysqlBackupSchedule="61 3 * * *"),
    S("types", "mysqlBackupSchedule", "field hour '5-2' must use digits 0-23", mysqlBackupEnabled="true",
      mysqlBackupSchedule="0 5-2 * * *"),
    S("types", "mysqlRestoreFrom", "atomic-mysql:mysqlRestoreFrom=yesterday: must be a backup id",
      mysqlBackupEnabled="true", mysqlRestoreFrom="yesterday"),
    S("types", "mysqlRestoreFrom", "2026-02-30T10:00:00Z: must be a backup id (its UTC start",
      mysqlBackupEnabled="true", mysqlRestoreFrom="2026-02-30T10:00:00Z"),
    S("types", "mysqlRestoreFrom", "must be a backup id", mysqlBackupEnabled="true",
      mysqlRestoreFrom="2026-12-01 10:21:41"),
    S("types", "mysqlBackupBucket", "atomic-mysql:mysqlBackupBucket=My_Bucket: must be an S3 bucket name",
      stack="local", mysqlBackupEnabled="true", mysqlBackupBucket="My_Bucket"),
    S("quantities", "mysqlBackupRetentionDays", "atomic-mysql:mysqlBackupRetentionDays=0: must be a whole number"
      " from 1 to 3650", mysqlBackupEnabled="true", mysqlBackupRetentionDays=0),
    S("quantities", "mysqlBinlogArchiveSeconds", "must be a whole number from 10 to 3600", mysqlBackupEnabled="true",
      mysqlBinlogArchiveSeconds=5),
    S("quantities", "mysqlBackupMaxAgeHours", "must be a whole number from 1 to 8760", mysqlBackupEnabled="true",
      mysqlBackupMaxAgeHours=0),
    S("injection", "mysqlBackupPrefix", "atomic-mysql:mysqlBackupPrefix=../other-stack: must be a key prefix",
      mysqlBackupEnabled="true", mysqlBackupPrefix="../other-stack"),
    S("injection", "mysqlBackupPrefix", "without a leading or trailing '/'", mysqlBackupEnabled="true",
      mysqlBackupPrefix="prod/mysql/"),
    S("injection", "mysqlBackupEndpoint", "atomic-mysql:mysqlBackupEndpoint=http://rgw.example.com: must be an"
      " https:// URL", stack="local", mysqlBackupEnabled="true", mysqlBackupBucket="backups",
      mysqlBackupEndpoint="http://rgw.example.com"),
    S("injection", "mysqlBackupEndpoint", "must be an https:// URL", stack="local", mysqlBackupEnabled="true",
      mysqlBackupBucket="backups", mysqlBackupEndpoint="https://rgw.example.com/bucket?x=1"),
    S("networks", "mysqlBackupRegion", "atomic-mysql:mysqlBackupRegion=Frankfurt: must be a region name",
      mysqlBackupEnabled="true", mysqlBackupRegion="Frankfurt"),
    Bad("secrets", "mysqlBackupAccessKeyId", "atomic-mysql:mysqlBackupAccessKeyId=[secret]: is required with"
        " mysqlBackupEnabled=true and mysqlBackupBucket set", stack="local",
        sets={"mysqlBackupEnabled": "true", "mysqlBackupBucket": "backups"}),
    Bad("secrets", "mysqlBackupAccessKeyId", "is used only with mysqlBackupEnabled=true in clusterMode=existing (the"
        " aws cluster makes its own scoped key)", secrets={"mysqlBackupAccessKeyId": "AKIAIOSFODNN7EXAMPLE"},
        sets={"mysqlBackupEnabled": "true"}, hidden="AKIAIOSFODNN7EXAMPLE"),
    Bad("secrets", "mysqlBackupAccessKeyId", "must be an AWS access key id (AKIA or ASIA", stack="local",
        sets={"mysqlBackupEnabled": "true", "mysqlBackupBucket": "backups"},
        secrets={"mysqlBackupAccessKeyId": "not-an-aws-key", "mysqlBackupSecretAccessKey": "s" * 40},
        hidden="not-an-aws-key"),
    Bad("secrets", "mysqlBackupSecretAccessKey", "is stored in plain text",
        sets={"mysqlBackupSecretAccessKey": "x" * 40}, hidden="x" * 40),
    # ---- command-line arguments are input too
    Bad("arguments", "--set", "--set minionCount: expected KEY=VALUE (see --help)", args=("--set", "minionCount")),
    Bad("arguments", "--set", "--set =5: expected KEY=VALUE", args=("--set", "=5")),
    Bad("arguments", "--secret", "--secret mysqlRootPassword: expected KEY=VALUE",
        args=("--secret", "mysqlRootPassword")),
    Bad("arguments", "--sett", "unrecognized arguments: --sett", args=("--sett", "x=1")),
]


@pytest.mark.parametrize("case", BAD, ids=[f"{c.category}:{c.setting}:{i}" for i, c in enumerate(BAD)])
def test_bad_input_stops_in_one_line_before_anything(
    case: Bad, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor = RecordingMonitor(AtomicMocks())
    monkeypatch.setattr(preview, "run_program", functools.partial(run_program, monitor=monitor))
    try:
        status = preview.main(case.argv(tmp_path))
    except SystemExit as exited:  # argparse's own exit, for bad arguments
        status = exited.code  # type: ignore[assignment]
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.endswith("\n") and captured.err.count("\n") == 1, captured.err
    line = captured.err.rstrip("\n")
    assert line.isprintable(), "no control, escape or line-breaking character reaches the terminal"
    assert line.startswith("error: ") and "Traceback" not in line
    assert case.setting in line
    assert case.expected in line, line
    assert len(line) < 700
    if case.hidden is not None:
        assert case.hidden not in line
    assert not (tmp_path / "build").exists(), "nothing is written for a refused configuration"
    assert [r.type for r in monitor.registrations if r.type != tokens.STACK] == []


def test_the_table_covers_every_category_of_the_issue() -> None:
    counts = Counter(case.category for case in BAD)
    assert len(BAD) >= 150
    for category in ("unknown keys", "types", "yaml oddities", "injection", "networks", "quantities", "images",
                     "contradictions", "secrets", "malformed files"):
        assert counts[category] >= 8, category


# ---------------------------------------------------------------- what must still pass

GOOD: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("dev", {"redisPrimaryImage": "redis:7", "redisReplicaImage": "redis:7"}, {}),
    ("dev", {"subnetCidr": "10.0.1.0/28"}, {}),
    ("dev", {"frontendImage": f"us-docker.pkg.dev/google-samples/containers/gke/gb-frontend@{DIGEST}",
             "mysqlImage": f"mysql:8.4.6@{DIGEST}", "mysqlBackupImage": f"percona/percona-xtrabackup@{DIGEST}"}, {}),
    ("dev", {"mysqlImage": "registry.example.com:5000/mirror/mysql:8.4.6-oraclelinux9",
             "redisPrimaryImage": "localhost:5000/redis:7.4.2"}, {}),
    ("dev", {"serviceCidr": "10.96.0.0/12", "podCidr": "100.64.0.0/16", "availabilityZone": "us-east-1-bos-1a",
             "owner": "Platform Team", "keyName": "ops-2024_key", "aws:profile": "prod-admin", "aws:version": "7.51.1",
             "changeCause": "déploiement 42: nouvelle image"}, {}),
    ("dev", {"adminCidrs": TWENTY_CIDRS[:18], "serviceCidr": "10.254.0.0/28"}, {}),
    # A /16 of public space is the most admin sources may add up to; private space does not count.
    ("dev", {"adminCidrs": ["198.51.0.0/17", "203.0.0.0/17", "10.0.0.0/8", "172.16.0.0/12"]}, {}),
    ("dev", {"adminCidrs": ["0.0.0.0/1", "128.0.0.0/1"], "allowWorldAdminAccess": "true"}, {}),
    ("dev", {}, {"mysqlRootPassword": GOOD_PASSWORD, "mysqlReplicationPassword": "Aa1-" + "x7Q" * 9 + "z",
                 "mysqlBackupPassword": "correct-horse-battery-staple", "mysqlVerifyPassword": "n0t-a-dictionary-wd"}),
    ("local", {"renderYamlTo": "", "kubeContext": "kind-atomic"}, {"kubeconfig": "apiVersion: v1\nkind: Config\n"}),
    ("local", {"mysqlImage": "mariadb:11.4", "mysqlBackupImage": "quay.io/mirror/mariadb:11.4.8-ubi9"}, {}),
    ("dev", {"mysqlBackupEnabled": "true", "mysqlBackupSchedule": "*/30 1-5,22 * * 0-6", "prometheusOperator": "true",
             "mysqlRestoreFrom": "2026-12-01T10:21:41Z", "mysqlRestorePrefix": "prod/mysql",
             "mysqlRestoreBucket": "prod-backups-0123"}, {}),
    ("local", {"mysqlBackupEnabled": "true", "mysqlBackupBucket": "team.backups-1",
               "mysqlBackupEndpoint": "https://rgw.example.com:8443", "mysqlRestoreFrom": "20261201T031700Z"},
     {"mysqlBackupAccessKeyId": "rgw-user-key", "mysqlBackupSecretAccessKey": "rgw-secret-key-value-0123"}),
    *[(stack, {}, {}) for stack in STACKS],
]


@pytest.mark.parametrize(("stack", "sets", "secrets"), GOOD, ids=[f"{s}:{sorted(o) + sorted(p)}" for s, o, p in GOOD])
def test_valid_edge_cases_still_pass(stack: str, sets: dict[str, Any], secrets: dict[str, str],
                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = Bad("good", "", "", sets=sets, secrets=secrets, stack=stack).argv(tmp_path)
    assert preview.main(argv) == 0, capsys.readouterr().err
    assert capsys.readouterr().err == ""
    assert (tmp_path / "build" / stack / "plan.json").is_file()


def test_a_stack_file_with_the_engine_s_own_keys_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pulumi: keys are the engine's, and a provider's own keys are the provider's: both pass."""
    text = stack_file("dev", 'pulumi:disable-default-providers: ["kubernetes"]', "aws:skipMetadataApiCheck: true",
                      "atomic-mysql:mysqlRootPassword:", "    secure: v1:bzTfJl4IRVFb9hqI:pWFaDaug9O6jdGibQ2VtnJZ=")
    argv = Bad("good", "", "", stack="dev", file=text, secrets={"mysqlRootPassword": GOOD_PASSWORD}).argv(tmp_path)
    assert preview.main(argv) == 0, capsys.readouterr().err


# ---------------------------------------------------------------- the same rules under `pulumi up`


def test_keys_the_language_host_passes_in_pulumi_config_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `pulumi up` the whole config map arrives in PULUMI_CONFIG (the language host sets it);
    a typo that only that map holds is refused too."""
    from components.settings.load import SettingsError

    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"atomic-mysql:mysqlReplica": "5"}))
    monitor = RecordingMonitor(AtomicMocks())
    with pytest.raises(SettingsError, match=r"atomic-mysql:mysqlReplica=5: .* did you mean mysqlReplicas\?"):
        run_program("dev", monitor=monitor)
    assert [r.type for r in monitor.registrations if r.type != tokens.STACK] == []


def test_configured_passwords_stay_secret_and_reach_the_set_unchanged() -> None:
    plan = run_program("dev", secret_overrides={"mysqlRootPassword": GOOD_PASSWORD})
    [secret] = [r for r in plan.resources if r.type == tokens.SECRET and r.name.endswith("mysql-secret")]
    assert secret.state["stringData"]["root-password"] == GOOD_PASSWORD
    assert GOOD_PASSWORD not in json.dumps([r.inputs for r in plan.resources])


# ---------------------------------------------------------------- limits checked on the real graph


@pytest.fixture(scope="module")
def dev_plan() -> Plan:
    return run_program("dev", {"mysqlBackupEnabled": "true"})  # every object name the set can have


def test_the_names_the_settings_keep_apart_are_the_names_the_workload_uses(dev_plan: Plan) -> None:
    # Not the claims: the StatefulSet controller names them (data-<set>-N); the set only patches them.
    namespaced = {(o["kind"], o["metadata"]["name"]) for o in dev_plan.kubernetes_objects()
                  if o["metadata"].get("namespace") == "atomic-mysql" and o["kind"] != "PersistentVolumeClaim"}
    guestbook = {name for kind, name in namespaced if not name.startswith("mysql")} - set(NAMESPACE_OBJECT_NAMES)
    assert guestbook == set(GUESTBOOK_OBJECT_NAMES)
    assert {("NetworkPolicy", name) for name in NAMESPACE_OBJECT_NAMES} <= namespaced
    assert {name for kind, name in namespaced if name.startswith("mysql")} == {
        f"mysql{suffix}" for suffix in MYSQL_OBJECT_SUFFIXES}


def _inbound_rules_per_group(plan: Plan) -> dict[str, int]:
    groups = {r.outputs.get("id") or r.state.get("id"): r.name for r in plan.of_type(tokens.SECURITY_GROUP)}
    counts: Counter[str] = Counter()
    for rule in plan.of_type(tokens.INGRESS_RULE):
        counts[groups.get(rule.inputs["securityGroupId"], rule.inputs["securityGroupId"])] += 1
    return dict(counts)


def test_the_most_admin_cidrs_allowed_fit_every_security_group() -> None:
    """The bound in settings/load.py (_admin_rules_fit) against the rules the cluster really builds,
    with every option that adds rules turned on: each group stays within AWS's quota, and one CIDR
    more is refused."""
    options = {"enableCockpit": "true", "enableCadvisor": "true", "enableNodePorts": "true",
               "sshFromAdminCidrs": "true", "apiLoadBalancer": "true", "frontendServiceType": "LoadBalancer"}
    most = (SECURITY_GROUP_RULE_QUOTA - 6) // 4  # 6 fixed: 5, and SSH from the Instance Connect Endpoint
    cidrs = [f"198.51.{i}.0/24" for i in range(most)]
    counts = _inbound_rules_per_group(run_program("dev", {**options, "adminCidrs": cidrs}))
    assert counts and max(counts.values()) <= SECURITY_GROUP_RULE_QUOTA, counts
    from components.settings.load import SettingsError

    with pytest.raises(SettingsError, match=f"lists {most + 1} CIDRs; with 4 rules each"):
        run_program("dev", {**options, "adminCidrs": [*cidrs, "203.0.113.0/24"]})


@pytest.mark.parametrize("namespace", ["aws", "tls"])
def test_provider_keys_are_the_keys_the_provider_sdk_reads_from_config(namespace: str) -> None:
    """ProviderArgs (what load.py lists) and the SDK's config module (what the default provider is
    configured from) are generated from the same schema: the same keys, camelCased."""
    import importlib
    import inspect
    import re
    import sys

    from components.settings.load import ENGINE_PROVIDER_KEYS, provider_settings

    package = importlib.import_module(f"pulumi_{namespace}.config")
    getattr(package, "proxy" if namespace == "tls" else "region")  # the lazy module loads its vars
    source = inspect.getsource(sys.modules[f"pulumi_{namespace}.config.vars"])
    read = set(re.findall(r"__config__\.get\w*\('(\w+)'", source))
    assert read and provider_settings(namespace) == read | ENGINE_PROVIDER_KEYS
