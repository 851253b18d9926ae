import sys

from tools.etcd.cli import main

sys.exit(main())
