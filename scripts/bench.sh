#!/usr/bin/env bash
# bench.sh: compare the execution engines side by side (make bench). For each
# engine in turn, bin/bench starts the real stack (the supervisor as root, the
# gateway as its own user on a loopback port), measures latency, throughput
# and memory for the seed README's hello-world and pandas scripts, and an
# overload cell (both mixed, 16 in flight against the default slots), stops
# the stack, and prints a Markdown table with the ratios on stdout. In the
# same run it measures the primitive (a clone into the zygote's namespaces
# from a Python with numpy and pandas imported, with the venv's Python, as
# root) and reports each engine's figures as ratios to it too. The
# throughput cells run again in later rounds (-rounds, default 3), the
# engines and the primitive taking turns; the median round is reported.
#
#   scripts/bench.sh                       every engine (cold,warm)
#   scripts/bench.sh -engines cold -n 50   arguments go to bin/bench (-help)
#   scripts/bench.sh -json > bench.json
#
# Environment: BIN (default <repo>/bin, built first when go is on PATH; a BIN
# given is used as it is), VENV (<repo>/.venv), PYEXEC_BENCH_ENGINES.
# Needs root and make setup. Exits non-zero when any request did not get its
# correct 200 answer. Ctrl-C stops the stack and removes its socket and
# cgroups before exiting.
exec "$(dirname "${BASH_SOURCE[0]}")/drive.sh" bench "$@"
