"""Entry point of the ``nomad-driver-rawexec`` external plugin."""

from __future__ import annotations

import sys


def main() -> None:
    sys.stderr.write("nomad-driver-rawexec: not implemented yet\n")
    sys.exit(1)
