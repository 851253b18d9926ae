"""The rules a setting's value is checked against, as plain functions of plain values.

settings/load.py reads each value and applies these; the offline harness shows values with
`shown` too. Nothing here imports pulumi, so every rule is tested on its own, and each limit
names the consumer that sets it (AWS, kube-apiserver, the kubelet, MySQL), so that a refused
value is one its consumer would refuse later, after resources exist.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from components import facts
from components.facts import QUANTITY_FACTORS

# --------------------------------------------------------------------------
# Showing a value in the one line a user sees
# --------------------------------------------------------------------------

SHOWN_MAX = 60  # characters of a value shown before it is cut short
_PLAIN = re.compile(r"^[\x21-\x7e]+$")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def _escaped(ch: str, *, quoted: bool) -> str:
    if quoted and ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def shown(value: object, limit: int = SHOWN_MAX) -> str:
    """`value` as it appears in an error line: never a raw control, escape or line-breaking
    character, and never longer than about `limit` characters.

    A plain word (printable ASCII, no spaces or quotes) is shown as it is; anything else is
    quoted with backslash escapes. Lists and maps are shown as compact JSON.
    """
    if isinstance(value, str):
        text, quoted = value, not _PLAIN.fullmatch(value) or '"' in value or "\\" in value
    else:
        text, quoted = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str), False
    pieces: list[str] = []
    used = 0
    for index, ch in enumerate(text):
        piece = _escaped(ch, quoted=quoted)
        if used + len(piece) > limit:
            cut = "".join(pieces)
            head = f'"{cut}..."' if quoted else f"{cut}..."
            return f"{head} ({len(text)} characters, {len(text) - index} not shown)"
        pieces.append(piece)
        used += len(piece)
    body = "".join(pieces)
    return f'"{body}"' if quoted else body


def one_line(message: str) -> str:
    """A whole message made safe for a terminal line: every non-printable character escaped.

    Messages built with `shown` are already safe; this is the last guard at the boundary.
    """
    return "".join(_escaped(ch, quoted=False) for ch in message)


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate a mistyped `name` most likely meant: same letters in another case first,
    else the nearest by edit similarity, else None."""
    options = list(candidates)
    for option in options:
        if option.lower() == name.lower():
            return option
    lowered = {option.lower(): option for option in options}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[match[0]] if match else None


# --------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------

# RFC 1918: what a VPC, the Service range and the pod range are drawn from. A public range there
# would shadow real internet addresses for every node and pod.
PRIVATE_NETWORKS = facts.PRIVATE_NETWORKS
# RFC 6598 shared address space: fine for the cluster's own (virtual) Service and pod ranges.
SHARED_NETWORK = facts.SHARED_NETWORK
WORLD = ipaddress.IPv4Network("0.0.0.0/0")
# AWS: "The allowed block size is between a /16 netmask (65,536 IP addresses) and /28 netmask
# (16 IP addresses)", for a VPC and for a subnet (VPC User Guide, "VPC CIDR blocks").
AWS_BLOCK_PREFIXES = (16, 28)
# kube-apiserver refuses a larger --service-cluster-ip-range ("for 32-bit addresses, the mask
# must be >= 12"); the range must also hold the API Service (.1) and cluster DNS (.10) addresses.
SERVICE_WIDEST_PREFIX = 12
SERVICE_NARROWEST_PREFIX = 28
CIDR_FORM = "an IPv4 CIDR with its prefix and no host bits set, e.g. 10.0.0.0/16"


class RuleError(ValueError):
    """What is allowed, in words; the caller names the setting and shows the value."""


def cidr(text: object) -> ipaddress.IPv4Network:
    """An IPv4 network written with its prefix; `198.51.100.7` alone is refused (ipaddress would
    read it as a /32, which is rarely what was meant in a list of ranges)."""
    if not isinstance(text, str) or text.count("/") != 1 or not re.fullmatch(r"[0-9./]+", text):
        raise RuleError(f"must be {CIDR_FORM}")
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        raise RuleError(f"must be {CIDR_FORM}") from None


def is_private(network: ipaddress.IPv4Network, *, shared: bool) -> bool:
    ranges = (*PRIVATE_NETWORKS, SHARED_NETWORK) if shared else PRIVATE_NETWORKS
    return any(network.subnet_of(r) for r in ranges)


def source_problem(network: ipaddress.IPv4Network) -> str | None:
    """Why `network` cannot be the source of an inbound rule, or None."""
    if network == WORLD:
        return None
    for what, test in (("loopback", network.is_loopback), ("link-local", network.is_link_local),
                       ("multicast", network.is_multicast), ("reserved", network.is_reserved),
                       ("'this network' (0.0.0.0/8)", network.subnet_of(ipaddress.IPv4Network("0.0.0.0/8")))):
        if test:
            return f"is a {what} range, never the source of a connection: use the network clients connect from"
    return None


# --------------------------------------------------------------------------
# Container images
# --------------------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"localhost(?::[0-9]+)?|{_LABEL}(?:\.{_LABEL})+(?::[0-9]+)?|{_LABEL}:[0-9]+"
# The distribution reference grammar, read as docker does: a registry host (a name with a dot
# or a port, or localhost) is only ever the part before the first '/', so `redis:7` is the image
# redis with tag 7, not the host redis at port 7, and percona/x is a path on the default registry.
_IMAGE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
IMAGE_FORM = "an image pinned by tag or digest (not 'latest'), e.g. redis:7.4.2 or redis@sha256:<64 hex>"


@dataclass(frozen=True)
class ImageReference:
    domain: str | None
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The product's name: the last path component (mysql in docker.io/library/mysql)."""
        return self.path.rsplit("/", 1)[-1]


def image(text: str) -> ImageReference:
    """A pinned image reference, or RuleError."""
    match = _IMAGE.fullmatch(text) if len(text) <= 255 + 1 + 128 + 72 else None
    if not match or not (match.group("tag") or match.group("digest")) or match.group("tag") == "latest":
        raise RuleError(f"must be {IMAGE_FORM}")
    return ImageReference(match.group("domain"), match.group("path"), match.group("tag"), match.group("digest"))


def product_problem(reference: ImageReference, product: str, version: str) -> str | None:
    """Why `reference` is not an image of `product` at `version` (major.minor), or None.

    The tag must start with the version (8.4, 8.4.6, 8.4.6-oraclelinux9); an image pinned by
    digest alone shows no version and is taken on its name.
    """
    if reference.name != product:
        return f"must be a {product} image (named {product}, from any registry)"
    tag = reference.tag
    if tag is not None and not (tag == version or tag.startswith((f"{version}.", f"{version}-"))):
        return f"must be {product} {version}: its tag must start with {version}"
    return None


# --------------------------------------------------------------------------
# Quantities (parsed by components/facts.py, the one home of the factors)
# --------------------------------------------------------------------------

BYTES = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$")
BANDWIDTH = re.compile(r"^[0-9]+(k|M|G)$")
# The kubelet refuses a bandwidth annotation below 1k or above 1P bits per second
# (pkg/util/bandwidth: "resource is unreasonably small (< 1kbit)" / "large (> 1Pbit)").
BANDWIDTH_BOUNDS = (10**3, 10**15)
# The largest EBS gp3 volume is 16 TiB; a claim above it is never provisioned.
STORAGE_MAX = "16Ti"
# Far above any node this program builds (the largest EC2 instances have 448 vCPUs and a few
# TiB): a request above these would leave the pod pending forever.
CPU_MAX = "448"
MEMORY_MAX = "4Ti"


def cpu_millis(text: str) -> float:
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def bandwidth_bits(text: str) -> int:
    return int(text[:-1]) * QUANTITY_FACTORS[text[-1]]


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# EC2 key pair names: ASCII up to 255 characters; spaces, quotes and shell characters are refused
# here so that the name is safe wherever it is echoed (tags, scripts, the console).
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]{0,254}$")
# A relative path inside the project (git-ignored `rendered/` is the convention), no `..`.
RELATIVE_PATH = re.compile(r"^(?!/)(?!.*(?:^|/)\.\.(?:/|$))[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*/?$")
# Kubernetes caps all annotations of an object at 256 KiB together (apimachinery
# TotalAnnotationSizeLimitB); one free-text annotation gets a small, readable share of that.
ANNOTATION_MAX = 1024


def printable_line(text: str) -> bool:
    """One line of printable characters: nothing a terminal, YAML or a header would act on."""
    return all(ch.isprintable() for ch in text)


# --------------------------------------------------------------------------
# Passwords
# --------------------------------------------------------------------------

# MySQL's CHANGE REPLICATION SOURCE refuses a replication password longer than 32 characters
# (error 3056, ER_CHANGE_MASTER_PASSWORD_LENGTH, since 5.7.5). MariaDB 10.11 took a 64-character
# one when tried here, but mysql is the default engine and one rule for every account keeps the
# rule one sentence. The generated passwords are 32 letters and digits.
PASSWORD_LENGTH = (16, 32)
PASSWORD_DISTINCT = 8
PASSWORD_RULE = (
    f"must be {PASSWORD_LENGTH[0]} to {PASSWORD_LENGTH[1]} printable ASCII characters without spaces, mixing"
    f" at least two of lowercase, uppercase, digits and symbols, with at least {PASSWORD_DISTINCT} different"
    " characters (e.g. openssl rand -base64 24)"
)


def password_problem(value: str) -> str | None:
    """What is wrong with a configured password, in words that never repeat any part of it."""
    if any(ch in "\r\n\0" for ch in value):
        return f"contains a line break or NUL: {PASSWORD_RULE}"
    if not all("\x21" <= ch <= "\x7e" for ch in value):
        return f"contains a space, a control or a non-ASCII character: {PASSWORD_RULE}"
    low, high = PASSWORD_LENGTH
    if not low <= len(value) <= high:
        return f"is too {'short' if len(value) < low else 'long'}: {PASSWORD_RULE}"
    classes = sum(any(test(ch) for ch in value) for test in (str.islower, str.isupper, str.isdigit,
                                                            lambda ch: not ch.isalnum()))
    if classes < 2 or len(set(value)) < PASSWORD_DISTINCT:
        return f"is too weak: {PASSWORD_RULE}"
    return None


# --------------------------------------------------------------------------
# Backups: schedule, bucket, prefix, endpoint, restore point
# --------------------------------------------------------------------------

# Kubernetes' CronJob controller parses robfig/cron's standard five fields (minute, hour, day of
# month, month, day of week); names and @-macros are left out so that the value means one thing.
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 6))
_CRON_ITEM = re.compile(r"^(\*|([0-9]{1,2})(-([0-9]{1,2}))?)(/([0-9]{1,2}))?$")


def cron_problem(text: str) -> str | None:
    """Why `text` is no five-field cron schedule of digits, '*', ',', '-' and '/', or None."""
    fields = text.split()
    if len(fields) != len(_CRON_FIELDS):
        return "must be a cron schedule of 5 fields (minute hour day-of-month month day-of-week), e.g. '17 3 * * *'"
    for value, (what, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        for item in value.split(","):
            match = _CRON_ITEM.fullmatch(item)
            numbers = [int(n) for n in (match.group(2), match.group(4)) if n is not None] if match else []
            step = int(match.group(6)) if match and match.group(6) else None
            if match is None or not all(low <= n <= high for n in numbers) or step == 0 or (
                    len(numbers) == 2 and numbers[0] > numbers[1]):
                return f"field {what} {value!r} must use digits {low}-{high}, '*', ',', '-' and '/' only"
    return None


# S3 bucket naming rules (general purpose buckets): 3-63 characters, lowercase letters, digits,
# '.' and '-', starting and ending with a letter or digit, no '..', not shaped like an IPv4 address.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def bucket_problem(text: str) -> str | None:
    if not _BUCKET.fullmatch(text) or ".." in text or re.fullmatch(r"[0-9.]+", text) or text.startswith("xn--"):
        return ("must be an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-', starting and ending with"
                " a letter or digit")
    return None


# A key prefix: path segments of safe characters, no '..', no leading or trailing slash (the
# access key's policy is written for exactly `<prefix>/*`).
KEY_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}(/[A-Za-z0-9][A-Za-z0-9._-]{0,62}){0,7}$")
_ENDPOINT = re.compile(r"^https://([a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)(:[0-9]{1,5})?/?$")


def endpoint_problem(text: str) -> str | None:
    match = _ENDPOINT.fullmatch(text)
    if match is None or (match.group(5) and not 1 <= int(match.group(5)[1:]) <= 65535):
        return ("must be an https:// URL of an S3-compatible endpoint, host and optional port only, e.g."
                " https://rgw.example.com:8443 (backups never travel without TLS)")
    return None


# A backup id is the UTC time its backup started; a restore point is a UTC time to the second.
BACKUP_ID = re.compile(r"^([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z$")
RESTORE_TIME = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z$")


def restore_problem(text: str) -> str | None:
    match = BACKUP_ID.fullmatch(text) or RESTORE_TIME.fullmatch(text)
    if match is not None:
        try:
            year, month, day, hour, minute, second = (int(part) for part in match.groups())
            datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
            return None
        except ValueError:
            pass
    return ("must be a backup id (its UTC start, e.g. 20261201T031700Z) or a UTC time to restore to"
            " (e.g. 2026-12-01T10:21:41Z), or empty")
