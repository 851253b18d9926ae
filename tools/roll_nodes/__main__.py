import sys

from tools.roll_nodes.cli import main

sys.exit(main())
