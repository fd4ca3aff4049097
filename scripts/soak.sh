#!/usr/bin/env bash
# soak.sh: a bounded soak test of the real stack (make soak). For each engine
# in turn, bin/soak starts the supervisor as root and the gateway as its own
# user (as make run does), sends benign requests with exact expected answers
# mixed with hostile ones (timeouts, memory and fork bombs, output floods,
# exits, forged result frames, monkeypatching, ...) from many more clients
# than there are slots, stops the stack, and reports per kind: requests, ok,
# busy, wrong, internal, lost and hung; benign p50/p99; the supervisor's and
# gateway's RSS and open fds before and after.
#
#   scripts/soak.sh                          both engines, 180 s each
#   SOAK_SECONDS=60 scripts/soak.sh          a short soak (CI)
#   SOAK_HOSTILE=timeout,exit scripts/soak.sh   only these hostile kinds
#   scripts/soak.sh -engines warm -json      arguments go to bin/soak (-help)
#
# Environment: SOAK_SECONDS (load time per engine, default 180),
# SOAK_ENGINES (cold,warm), SOAK_CONCURRENCY (16), SOAK_SLOTS (2),
# SOAK_HOSTILE (all, none, or a list of kinds), BIN (default <repo>/bin,
# built first when go is on PATH), VENV (<repo>/.venv).
#
# Fails (exit 1) on any wrong, internal, lost or hung answer; when the
# supervisor's or the gateway's RSS grows by more than 64 MiB or its open fds
# by more than 16 between the sample after warm-up and the one after the load
# (-max-rss-growth-mib, -max-fd-growth); or when a process, mount or cgroup
# of the stack is left after it stops. Needs root and make setup.
exec "$(dirname "${BASH_SOURCE[0]}")/drive.sh" soak "$@"
