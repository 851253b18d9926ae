"""The Fedora Cloud Base AMI lookup."""

from __future__ import annotations

import re

from components.aws.ami import fedora_ami_filters


def test_ami_lookup_selects_only_released_fedora_cloud_base_images() -> None:
    regex, filters = fedora_ami_filters(42)
    name_filter = next(f for f in filters if f["name"] == "name")
    assert name_filter["values"] == ["Fedora-Cloud-Base-AmazonEC2.x86_64-42-*"]
    assert re.match(regex, "Fedora-Cloud-Base-AmazonEC2.x86_64-42-1.1")
    for other in ("Fedora-Cloud-Base-AmazonEC2.x86_64-Rawhide-20250301.n.0",
                  "Fedora-Cloud-Base-AmazonEC2.x86_64-42-20250301.n.0",
                  "Fedora-Cloud-Base-AmazonEC2.x86_64-42_Beta-1.2",
                  "Fedora-Cloud-Base-AmazonEC2.x86_64-41-1.4", "Fedora-Cloud-Base-AmazonEC2.aarch64-42-1.1"):
        assert not re.match(regex, other), other
