"""`python -m tools.mysql_verify ...` (and `make verify ARGS='...'`)."""

from tools.mysql_verify.cli import main

raise SystemExit(main())
