"""The issue's adversarial process trees, as ``sh -c`` scripts: the containment tests and
``benchmarks/bench_stop.py`` start and stop these same shapes."""

from __future__ import annotations

SHAPES = {
    "plain": "exec sleep 100",
    "setsid-child": "setsid sleep 100 & exec sleep 100",
    "double-fork": "(setsid sh -c 'sleep 100 & exit 0' &) ; exec sleep 100",
    "sigterm-ignoring": "trap '' TERM INT; sh -c \"trap '' TERM INT; sleep 100\" & sleep 100; sleep 100",
    "new-session-forks-again": "setsid sh -c '(sleep 100 &) ; (setsid sleep 100 &) ; sleep 100' & exec sleep 100",
    "fork-storm": "for i in 1 2 3 4 5 6 7 8 9 10; do (sleep 100 &) ; done; exec sleep 100",
}
#: Live processes per tree once a shape is fully up.
PROCS = {"plain": 1, "setsid-child": 2, "double-fork": 2, "sigterm-ignoring": 3, "new-session-forks-again": 4,
         "fork-storm": 11}
