"""mysql-verify: the Kubernetes tutorial's client-traffic checks as a tool (see docs/verify.md).

Run `python -m tools.mysql_verify --help`. The package needs only the standard library and
PyMySQL, so it can also be copied into a pod and run next to the servers.
"""

from tools.mysql_verify.checks import Endpoint, Options, VerifyError, verify
from tools.mysql_verify.cli import main

__all__ = ["Endpoint", "Options", "VerifyError", "main", "verify"]
