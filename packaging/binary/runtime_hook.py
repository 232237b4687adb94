"""Run by the single binary before the exporter starts: python-iptables finds the libiptc and libxtables it
was bundled with, and their extensions, never the host's (whose C library may be older than theirs)."""

import os
import sys

_here = getattr(sys, "_MEIPASS", os.path.dirname(os.path.abspath(sys.argv[0])))
os.environ["IPTABLES_LIBDIR"] = _here
os.environ["XTABLES_LIBDIR"] = os.path.join(_here, "xtables")
os.environ["PYTHON_IPTABLES_XTABLES_VERSION"] = "12"
