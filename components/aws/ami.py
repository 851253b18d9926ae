"""Which image the nodes boot: Fedora Cloud Base, looked up by owner, name and a release regex."""

from __future__ import annotations

FEDORA_OWNER = "125523088429"


def fedora_ami_filters(release: int) -> tuple[str, list[dict[str, object]]]:
    """(name_regex, filters) selecting a released Fedora Cloud Base image for x86_64.

    Final images are named Fedora-Cloud-Base-AmazonEC2.x86_64-<release>-<compose>.<respin>
    (e.g. -41-1.4); Rawhide and nightly/branched composes (-Rawhide-..., -42-20250301.n.0)
    and Beta images (-42_Beta-...) do not match the regex.
    """
    regex = rf"^Fedora-Cloud-Base-AmazonEC2\.x86_64-{release}-[0-9]{{1,2}}\.[0-9]+$"
    filters: list[dict[str, object]] = [
        {"name": "name", "values": [f"Fedora-Cloud-Base-AmazonEC2.x86_64-{release}-*"]},
        {"name": "architecture", "values": ["x86_64"]},
        {"name": "virtualization-type", "values": ["hvm"]},
        {"name": "root-device-type", "values": ["ebs"]},
        {"name": "state", "values": ["available"]},
    ]
    return regex, filters
