"""The single binary's program: the exporter's command line."""

import sys

from vz_traffic_exporter.cli import main

sys.exit(main(sys.argv[1:]))
