import sys

from robot_agent.cli import main

sys.exit(main())
