import sys

from vla_demo.cli import main

sys.exit(main())
