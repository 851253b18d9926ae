"""The topology picture: every preview draws build/<stack>/topology.svg naming every node, and
topology.png only when asked (`make preview` asks; the tests' previews and --quiet runs do not).

The SVG is read back as XML and the PNG through Pillow: what a reviewer opens, not the
layout's internal shapes.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from components import tokens
from tests.conftest import PROJECT_DIR, STACKS
from tools import preview, topology

SVG = "{http://www.w3.org/2000/svg}"
AWS_STACKS = [s for s in STACKS if s != "local"]


@pytest.fixture(scope="module")
def built(previewed_stacks: Path) -> Path:
    return previewed_stacks


def plan_of(built: Path, stack: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((built / stack / "plan.json").read_text())
    return document


def svg_texts(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    return [element.text or "" for element in root.iter(f"{SVG}text")]


def expected_names(plan: dict[str, Any]) -> set[str]:
    """Every node, security group, load balancer, StatefulSet pod, workload and Service the stack defines."""
    names = set()
    for entry in plan["resources"]:
        inputs = entry["inputs"]
        if entry["type"] in (tokens.INSTANCE, tokens.SECURITY_GROUP, tokens.LOAD_BALANCER):
            names.add((inputs.get("tags") or {}).get("Name") or entry["name"])
        kind, meta = inputs.get("kind"), inputs.get("metadata") or {}
        if kind in ("Service", "Deployment", "StatefulSet"):
            names.add(meta["name"])
        if kind == "StatefulSet":
            names |= {f"{meta['name']}-{i}" for i in range(inputs["spec"]["replicas"])}
    return names


@pytest.mark.parametrize("stack", STACKS)
def test_preview_draws_every_stack_naming_everything(built: Path, stack: str) -> None:
    svg = built / stack / "topology.svg"
    assert svg.is_file(), "every preview must draw the topology"
    assert not (built / stack / "topology.png").exists(), "the PNG costs every preview: only when asked"
    words = {word for text in svg_texts(svg) for word in text.replace(",", " ").split()}
    missing = {name for name in expected_names(plan_of(built, stack)) if name not in words}
    assert not missing, f"the picture does not name {sorted(missing)}"


def test_the_png_is_drawn_when_asked_and_matches_the_svg(built: Path, tmp_path: Path) -> None:
    """`make preview` (--png) and `python -m tools.topology` draw it: the same picture, as raster."""
    assert preview.main(["--stack", "dev", "--out", str(tmp_path / "asked"), "--quiet", "--png"]) == 0
    svg, png = tmp_path / "asked" / "dev" / "topology.svg", tmp_path / "asked" / "dev" / "topology.png"
    assert svg.read_text() == (built / "dev" / "topology.svg").read_text()  # the SVG does not change
    root = ET.parse(svg).getroot()
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (int(root.attrib["width"]), int(root.attrib["height"]))
    assert preview.main(["--stack", "dev", "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert not (tmp_path / "quiet" / "dev" / "topology.png").exists()
    shutil.copy(built / "prod" / "plan.json", tmp_path / "plan.json")
    assert topology.main([str(tmp_path / "plan.json")]) == 0
    assert (tmp_path / "topology.png").is_file() and (tmp_path / "topology.svg").is_file()


def test_make_preview_asks_for_the_png_and_preview_all_does_not() -> None:
    makefile = (PROJECT_DIR / "Makefile").read_text()
    preview_rule = re.search(r"^preview: deps\n\t(.+)$", makefile, re.M)
    preview_all_rule = re.search(r"^preview-all: deps\n\t(.+)$", makefile, re.M)
    assert preview_rule and "--png" in preview_rule.group(1)
    assert preview_all_rule and "--png" not in preview_all_rule.group(1) and "--quiet" in preview_all_rule.group(1)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_node_sits_in_its_security_group(built: Path, stack: str) -> None:
    model = topology.extract(plan_of(built, stack))
    instances = [e for e in plan_of(built, stack)["resources"] if e["type"] == tokens.INSTANCE]
    assert model.loose_nodes == []
    assert sorted(n.name for n in model.nodes) == sorted(e["inputs"]["tags"]["Name"] for e in instances)
    for group in model.groups:
        roles = {n.role for n in group.nodes}
        assert len(roles) == 1, f"{group.label} mixes {roles}"


def test_dev_picture_shows_ports_and_their_sources(built: Path) -> None:
    model = topology.extract(plan_of(built, "dev"))
    by_role = {g.nodes[0].role: g for g in model.groups}
    masters = {o.ports: o.sources for o in by_role["master"].openings}
    minions = {o.ports: o.sources for o in by_role["minion"].openings}
    control_plane, nodes = f"SG {by_role['master'].label}", f"SG {by_role['minion'].label}"
    assert masters["22/tcp"] == minions["22/tcp"] == ("SG cluster-connect-endpoint",)
    assert masters["2379-2380/tcp"] == (control_plane,)
    assert set(masters["6443/tcp"]) == {"198.51.100.0/24", nodes}
    # the apiservers, and metrics-server on the other minions
    assert set(minions["10250/tcp"]) == {control_plane, nodes}
    assert not any(o.world for g in model.groups for o in g.openings)


def test_world_open_ports_are_drawn_in_red(built: Path) -> None:
    plan = plan_of(built, "dev")
    rule = next(e for e in plan["resources"] if e["type"] == tokens.INGRESS_RULE and e["inputs"].get("cidrIpv4"))
    rule["inputs"]["cidrIpv4"] = "0.0.0.0/0"
    drawing = topology.layout(topology.extract(plan))
    red = [s for s in drawing.shapes if isinstance(s, topology.Text) and s.fill == topology.WORLD_TEXT]
    assert red and all("INTERNET 0.0.0.0/0" in s.text for s in red)


def test_prod_picture_marks_what_is_protected(built: Path) -> None:
    model = topology.extract(plan_of(built, "prod"))
    assert {n.role for n in model.nodes if n.protected} == {"master"}
    assert [w.name for w in model.workloads if w.protected] == ["mysql"]
    assert "VPC 10.40.0.0/16 (protected)" in model.network


def test_services_point_at_what_they_select(built: Path) -> None:
    model = topology.extract(plan_of(built, "dev"))
    targets = {s.name: [(w.name, pod) for w, pod in model.targets(s)] for s in model.services}
    assert targets["mysql-primary"] == [("mysql", "mysql-0")]
    assert targets["mysql-read"] == [("mysql", None)]
    assert targets["frontend"] == [("frontend", None)]
    lines = [s for s in topology.layout(model).shapes if isinstance(s, topology.Line)]
    assert len(lines) == sum(len(t) for t in targets.values())


@pytest.mark.parametrize("stack", STACKS)
def test_everything_is_drawn_inside_the_canvas(built: Path, stack: str) -> None:
    drawing = topology.layout(topology.extract(plan_of(built, stack)))
    for shape in drawing.shapes:
        if isinstance(shape, topology.Rect):
            assert shape.x >= 0 and shape.y >= 0
            assert shape.x + shape.w <= drawing.width and shape.y + shape.h <= drawing.height, shape
        elif isinstance(shape, topology.Text):
            right = shape.x + (topology.text_width(shape.text, shape.size) if shape.anchor == "start" else 0)
            assert shape.x >= 0 and right <= drawing.width and shape.y <= drawing.height, shape


def test_cli_draws_from_plan_json(built: Path, tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text((built / "dev" / "plan.json").read_text())
    assert topology.main([str(tmp_path / "plan.json")]) == 0
    assert "atomic-master-1" in {w for t in svg_texts(tmp_path / "topology.svg") for w in t.split()}


def test_prod_draws_both_load_balancers_with_listeners_sources_and_targets(built: Path) -> None:
    plan = plan_of(built, "prod")
    model = topology.extract(plan)
    by_name = {b.name: b for b in model.balancers}
    lbs = [e for e in plan["resources"] if e["type"] == tokens.LOAD_BALANCER]
    assert sorted(by_name) == sorted(e["inputs"]["tags"]["Name"] for e in lbs) == [
        "cluster-api-lb-nlb", "cluster-frontend-lb-nlb"]
    masters = [n.name for n in model.nodes if n.role == "master"]
    minions = [n.name for n in model.nodes if n.role == "minion"]
    api, frontend = by_name["cluster-api-lb-nlb"], by_name["cluster-frontend-lb-nlb"]
    assert api.listeners == ("6443/tcp → 6443/tcp on ip targets",)
    assert api.sources == ("6443/tcp ← 198.51.100.0/24", "6443/tcp ← 203.0.113.0/28")
    assert list(api.targets) == masters and not api.world
    assert frontend.listeners == ("80/tcp → 30080/tcp on instance targets",)
    assert frontend.sources == ("80/tcp ← INTERNET 0.0.0.0/0",) and frontend.world
    assert list(frontend.targets) == minions
    assert (api.scheme, api.deletion_protection) == ("internet-facing", True)
    drawing = topology.layout(model)
    red = {s.text for s in drawing.shapes if isinstance(s, topology.Text) and s.fill == topology.WORLD_TEXT}
    assert "80/tcp ← INTERNET 0.0.0.0/0" in red
    texts = " ".join(svg_texts(built / "prod" / "topology.svg"))
    for text in ("network load balancer cluster-api-lb-nlb", "6443/tcp → 6443/tcp on ip targets",
                 "80/tcp → 30080/tcp on instance targets", *minions):
        assert text in texts


def test_a_target_that_is_no_node_is_shown_as_it_is(built: Path) -> None:
    plan = plan_of(built, "prod")
    attachment = next(e for e in plan["resources"] if e["type"] == tokens.TARGET_GROUP_ATTACHMENT
                      and e["inputs"]["targetId"] == "10.40.16.10")
    attachment["inputs"]["targetId"] = "10.40.3.99"
    (api,) = [b for b in topology.extract(plan).balancers if b.name == "cluster-api-lb-nlb"]
    assert "10.40.3.99" in api.targets and "atomic-master-1" not in api.targets


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_legend_names_each_roles_iam_policies_and_ssm_parameters(built: Path, stack: str) -> None:
    plan = plan_of(built, stack)
    model = topology.extract(plan)
    resources = plan["resources"]
    assert [a.role for a in model.access] == ["master", "minion"]
    for access in model.access:
        nodes = [n.name for n in model.nodes if n.role == access.role]
        assert access.nodes == len(nodes)
        for node in nodes:
            policies = sorted(e["name"].split(f"{node}-", 1)[1] for e in resources
                              if e["type"] == tokens.IAM_ROLE_POLICY and f"-{node}-" in e["name"])
            assert [p for p, _ in access.policies] == policies, node
            own = [e for e in resources if e["type"] == tokens.SSM_PARAMETER and f"/{node}/" in e["inputs"]["name"]]
            assert access.parameters == len(own) > 0, node
            assert {e["inputs"]["name"].split(f"/{node}/", 1)[1] for e in own} == set(access.files)
        assert access.parameter_type == "SecureString"
        assert access.key == f"alias/atomic-{stack}-pki"
        assert access.path == f"/atomic-mysql/{stack}/atomic/<node>/"
    assert dict(model.access[1].policies)["ebs-csi"][0] == "DescribeOnly"
    texts = svg_texts(built / stack / "topology.svg")
    assert any(t.startswith("  policy ebs-csi: DescribeOnly") for t in texts)
    assert any(f"SSM: {model.access[0].parameters} SecureString parameters per node" in t for t in texts)
    assert any(t.strip().startswith("etc/kubernetes/pki/: ca.crt") for t in texts)


def test_local_has_no_load_balancers_and_no_legend(built: Path) -> None:
    model = topology.extract(plan_of(built, "local"))
    assert model.balancers == [] and model.access == []


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_picture_shows_every_zone_its_subnets_and_the_nodes_in_each(built: Path, stack: str) -> None:
    plan = plan_of(built, stack)
    model = topology.extract(plan)
    subnets = [e for e in plan["resources"] if e["type"] == tokens.SUBNET]
    assert sorted(s.cidr for s in model.subnets) == sorted(e["inputs"]["cidrBlock"] for e in subnets)
    placed = sorted(n for s in model.subnets for n in s.nodes)
    assert placed == sorted(n.name for n in model.nodes), "every node in exactly one subnet"
    for node in model.nodes:
        (home,) = [s for s in model.subnets if node.name in s.nodes]
        assert home.zone == node.zone and node.public == home.public
    texts = " ".join(svg_texts(built / stack / "topology.svg"))
    for subnet in model.subnets:
        assert f"subnet {subnet.cidr} ({subnet.name})" in texts
    for zone in model.zones:
        assert f"zone {zone}" in texts


def test_prod_shows_three_zones_each_with_a_nat_gateway_and_its_private_nodes(built: Path) -> None:
    model = topology.extract(plan_of(built, "prod"))
    assert model.zones == ["us-west-2a", "us-west-2b", "us-west-2c"]
    assert "3 zones, 6 subnets" in model.network
    for zone in model.zones:
        public, private = (s for s in model.subnets if s.zone == zone)
        assert public.public and "NAT gateway" in public.holds and "load balancers" in public.holds
        assert not private.public and not public.nodes
        assert [n for n in private.nodes if "master" in n] and [n for n in private.nodes if "minion" in n]
    assert not any(n.public for n in model.nodes)
    assert sum("Instance Connect Endpoint" in s.holds for s in model.subnets) == 1


def test_a_public_subnet_with_nodes_is_drawn_in_the_warning_colour(built: Path) -> None:
    """dev's nodes have public addresses (for cost): its subnet's line says so in orange."""
    drawing = topology.layout(topology.extract(plan_of(built, "dev")))
    warned = {s.text for s in drawing.shapes if isinstance(s, topology.Text) and s.fill == topology.PUBLIC_TEXT}
    assert any(t.startswith("public subnet 10.0.1.0/24") for t in warned)
    calm = topology.layout(topology.extract(plan_of(built, "prod")))
    assert not any(s.text.startswith("public subnet") for s in calm.shapes
                   if isinstance(s, topology.Text) and s.fill == topology.PUBLIC_TEXT)


def test_the_other_kinds_are_counted_in_plain_english(built: Path) -> None:
    words = " ".join(svg_texts(built / "dev" / "topology.svg"))
    assert "2 StorageClasses" in words and "9 NetworkPolicies" in words and "1 CSIDriver," in words
