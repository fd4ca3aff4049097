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
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

die() { echo "soak: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root: the soak starts the supervisor, which creates namespaces and cgroups"
[ -x "$VENV/bin/python3" ] || die "no venv at $VENV: run make setup"
if [ -z "${BIN:-}" ]; then
	BIN="$ROOT/bin"
	if command -v go >/dev/null; then
		(cd "$ROOT" && go build -o "$BIN/" ./cmd/soak ./cmd/supervisor ./cmd/gateway)
	fi
fi
for b in soak supervisor gateway; do
	[ -x "$BIN/$b" ] || die "$BIN/$b missing: run make setup"
done

# soak handles SIGINT and SIGTERM itself (it stops the stack and checks
# that nothing is left); it runs in the background so a SIGTERM sent to this
# script alone reaches it too.
"$BIN/soak" -bin "$BIN" -venv "$VENV" -runner "$ROOT/runner/runner.py" "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
set +e
wait "$pid"
rc=$?
while kill -0 "$pid" 2>/dev/null; do
	wait "$pid"
	rc=$?
done
exit "$rc"
