"""Certificates renewed on the running nodes: atomic-renew-pki.service (atomic-fetch-pki --renew,
node/files) and its timer.

`pulumi up` re-issues the leaf certificates every renewal round (facts.LEAF_RENEWAL_DAYS) and writes
them to SSM. Every node checks SSM every hour and restarts only the daemons whose files changed;
each node at a minute of the hour of its own, so that the masters restart their apiservers
RENEWAL_SPACING_MINUTES apart (one at a time behind the load balancer and every minion's HAProxy,
which leave out an apiserver that does not answer), and the minions spread over the rest of the hour.
"""

from __future__ import annotations

from components.facts import MASTER_SLOTS
from components.node.layout import NodeSpec
from components.node.units import SYSTEMD_DIR

RENEW_UNIT = "atomic-renew-pki"
RENEW_SERVICE = f"{SYSTEMD_DIR}/{RENEW_UNIT}.service"
RENEW_TIMER = f"{SYSTEMD_DIR}/{RENEW_UNIT}.timer"
RENEWAL_SPACING_MINUTES = 20  # masters: :00, :20, :40


def renewal_minute(node: NodeSpec) -> int:
    """The minute of the hour this node checks for new certificates: the master slots 20 minutes
    apart, minions at the minutes between (never a master's minute)."""
    if node.slot < MASTER_SLOTS:
        return node.slot * RENEWAL_SPACING_MINUTES
    minion = node.slot - MASTER_SLOTS
    free = [m for m in range(60) if m % RENEWAL_SPACING_MINUTES not in (0, 1, 2)]
    return free[(minion * 7) % len(free)]


def render_renewal_timer(node: NodeSpec) -> str:
    return f"""[Timer]
OnCalendar=*:{renewal_minute(node):02d}

[Install]
WantedBy=timers.target
"""
