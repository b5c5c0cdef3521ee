import sys

from host_tools.cli import entry

sys.exit(entry())
