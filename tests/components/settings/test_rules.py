"""The value rules on their own, without Pulumi: showing values, suggestions, networks, images,
quantities and passwords."""

from __future__ import annotations

import ipaddress

import pytest

from components.facts import quantity_value
from components.pins import ENGINE_VERSIONS
from components.settings import rules
from components.settings.rules import RuleError


@pytest.mark.parametrize("code", [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, 0x202E, 0x200B,
                                  0xFEFF])
def test_no_control_escape_or_line_breaking_character_is_ever_shown_raw(code: int) -> None:
    text = rules.shown(f"a{chr(code)}b")
    assert text.isprintable() and chr(code) not in text
    assert rules.one_line(f"x{chr(code)}y").isprintable()


@pytest.mark.parametrize(("value", "text"), [
    ("10.0.0.0/16", "10.0.0.0/16"),
    ("", '""'),
    ("a b", '"a b"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("line\nbreak", '"line\\nbreak"'),
    ("tab\there", '"tab\\there"'),
    ("\x1b[31mred", '"\\x1b[31mred"'),
    ("ok\n", '"ok\\n"'),  # a trailing newline is not a plain word ($ would match before it)
    (["198.51.100.0/24", "x\ny"], '["198.51.100.0/24","x\\ny"]'),
    (3, "3"),
])
def test_values_are_shown_plain_or_quoted_with_escapes(value: object, text: str) -> None:
    assert rules.shown(value) == text


def test_long_values_are_cut_short_and_say_how_long_they_were() -> None:
    text = rules.shown("x" * 5000)
    assert text.startswith("x" * rules.SHOWN_MAX) and text.endswith("... (5000 characters, 4940 not shown)")
    escaped = rules.shown("\x00" * 5000)
    assert len(escaped) < 150 and escaped.startswith('"\\x00') and "(5000 characters," in escaped


@pytest.mark.parametrize(("typed", "meant"), [
    ("minionCoutn", "minionCount"), ("MinionCount", "minionCount"), ("mysqlReplica", "mysqlReplicas"),
    ("masterCnt", "masterCount"), ("zzzz", None),
])
def test_the_closest_declared_name_is_suggested(typed: str, meant: str | None) -> None:
    names = ["minionCount", "masterCount", "mysqlReplicas", "redisReplicas", "owner"]
    assert rules.closest(typed, names) == meant


@pytest.mark.parametrize("text", ["10.0.0.0/16", "0.0.0.0/0", "198.51.100.7/32"])
def test_cidrs_with_their_prefix_are_read(text: str) -> None:
    assert rules.cidr(text) == ipaddress.IPv4Network(text)


@pytest.mark.parametrize("text", ["198.51.100.7", "10.0.0.1/16", "10.0.0.0/33", "10.0.0.0/16 ", " 10.0.0.0/16",
                                  "10.0.0.0/16\n", "010.0.0.0/16", "10.0.0.0//16", "::/0", "10.0.0.0/16;id", 16, None])
def test_anything_else_is_not_a_cidr(text: object) -> None:
    with pytest.raises(RuleError, match="with its prefix and no host bits set"):
        rules.cidr(text)


@pytest.mark.parametrize(("network", "private", "shared"), [
    ("10.0.0.0/16", True, True), ("172.31.0.0/16", True, True), ("192.168.0.0/24", True, True),
    ("100.64.0.0/16", False, True), ("8.8.0.0/16", False, False), ("169.254.0.0/16", False, False),
    ("224.0.0.0/16", False, False), ("172.32.0.0/16", False, False), ("10.0.0.0/7", False, False),
])
def test_private_ranges(network: str, private: bool, shared: bool) -> None:
    net = ipaddress.IPv4Network(network)
    assert rules.is_private(net, shared=False) is private
    assert rules.is_private(net, shared=True) is shared


@pytest.mark.parametrize(("network", "problem"), [
    ("0.0.0.0/0", None), ("198.51.100.0/24", None), ("10.0.0.0/8", None), ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
    ("0.0.0.0/8", "'this network'"),
])
def test_sources_of_inbound_rules(network: str, problem: str | None) -> None:
    found = rules.source_problem(ipaddress.IPv4Network(network))
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest"), [
    ("redis:7", None, "redis", "7", None),
    ("name:16", None, "name", "16", None),
    ("localhost:5000/redis:7", "localhost:5000", "redis", "7", None),
    ("registry.example.com:5000/mirror/mysql:8.4.6", "registry.example.com:5000", "mirror/mysql", "8.4.6", None),
    ("us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v5", "us-docker.pkg.dev",
     "google-samples/containers/gke/gb-frontend", "v5", None),
    (f"mysql@sha256:{'a' * 64}", None, "mysql", None, f"sha256:{'a' * 64}"),
    (f"mysql:8.4.6@sha256:{'b' * 64}", None, "mysql", "8.4.6", f"sha256:{'b' * 64}"),
    ("percona/percona-xtrabackup:8.4.0-4.1", None, "percona/percona-xtrabackup", "8.4.0-4.1", None),
])
def test_pinned_images_are_read_by_the_reference_grammar(text: str, domain: str | None, path: str,
                                                          tag: str | None, digest: str | None) -> None:
    assert rules.image(text) == rules.ImageReference(domain, path, tag, digest)


@pytest.mark.parametrize("text", ["redis", "redis:latest", "localhost:5000/redis", "Redis:7", "redis:7/extra",
                                  "redis@sha256:abc", "https://x/y:1", "a b:1", "redis:7\n", "", ":7",
                                  "redis:" + "x" * 129, "/redis:7", "redis:-7"])
def test_unpinned_or_malformed_images_are_refused(text: str) -> None:
    with pytest.raises(RuleError, match="pinned by tag or digest"):
        rules.image(text)


def test_every_pinned_image_is_its_engine_s_product_at_its_version() -> None:
    """The rule that refuses a foreign server or backup image accepts every image the project pins."""
    for versions in ENGINE_VERSIONS.values():
        for version, (server, backup) in versions.items():
            for pinned in (server, backup):
                reference = rules.image(pinned)
                assert rules.product_problem(reference, reference.name, version) is None, pinned


@pytest.mark.parametrize(("text", "problem"), [
    ("mysql:8.4", None), ("mysql:8.4.6-oraclelinux9", None), (f"mysql@sha256:{'c' * 64}", None),
    ("mirror.example.com/library/mysql:8.4.6", None), ("mysql:8.40", "tag must start with 8.4"),
    ("mysql:8.0.43", "tag must start with 8.4"), ("mysql:lts", "tag must start with 8.4"),
    ("mariadb:8.4", "must be a mysql image"), ("bitnami/mysql-server:8.4", "must be a mysql image"),
])
def test_a_server_image_must_be_the_product_at_the_version(text: str, problem: str | None) -> None:
    found = rules.product_problem(rules.image(text), "mysql", "8.4")
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_quantities() -> None:
    assert quantity_value("16Ti") == 16 * 2**40 and quantity_value("1.5Gi") == 1.5 * 2**30
    assert rules.cpu_millis("250m") == 250 and rules.cpu_millis("1.5") == 1500
    assert rules.bandwidth_bits("10M") == 10**7
    assert rules.BYTES.fullmatch("10Gi") and not rules.BYTES.fullmatch("10GB")
    assert not rules.BANDWIDTH.fullmatch("10M\n")


@pytest.mark.parametrize("password", ["correct-horse-battery-staple", "Tr0ub4dor&3-long-enough",
                                      "aB3-klmnopqrstuv", "A" * 8 + "12345678", "!@#$%^&*()_+{}|:abc"])
def test_good_passwords_pass(password: str) -> None:
    assert rules.password_problem(password) is None


@pytest.mark.parametrize(("password", "problem"), [
    ("x", "is too short"), ("Aa1!" * 3, "is too short"), ("Aa1!" * 9, "is too long"),
    ("a" * 20, "is too weak"), ("1234567890123456", "is too weak"), ("abababababababab", "is too weak"),
    ("Aa1Aa1Aa1Aa1Aa1Aa1", "is too weak"), ("with space in it 12", "contains a space"),
    ("ünïcödé-pässwörd-1", "non-ASCII"), ("tab\tinside-password1", "contains a space"),
    ("line\nbreak-password-1", "line break or NUL"), ("nul\x00inside-password1", "line break or NUL"),
])
def test_weak_passwords_are_refused_with_the_rule(password: str, problem: str) -> None:
    found = rules.password_problem(password)
    assert found is not None and problem in found.split(":")[0] and found.endswith(rules.PASSWORD_RULE)
    assert len(password) < 6 or password not in found
