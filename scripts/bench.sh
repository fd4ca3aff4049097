#!/usr/bin/env bash
# bench.sh: compare the execution engines side by side (make bench). For each
# engine in turn, bin/bench starts the real stack (the supervisor as root, the
# gateway as its own user on a loopback port), measures latency, throughput
# and memory for the seed README's hello-world and pandas scripts, stops the
# stack, and prints a Markdown table with the ratios on stdout. The
# throughput cells run again in later rounds (-rounds, default 3), the
# engines taking turns on fresh stacks; the median round is reported.
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
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

die() { echo "bench: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root: the benchmark starts the supervisor, which creates namespaces and cgroups"
[ -x "$VENV/bin/python3" ] || die "no venv at $VENV: run make setup"
if [ -z "${BIN:-}" ]; then
	BIN="$ROOT/bin"
	if command -v go >/dev/null; then
		# Incremental: prints nothing and takes a moment when up to date.
		(cd "$ROOT" && go build -o "$BIN/" ./cmd/bench ./cmd/supervisor ./cmd/gateway)
	fi
fi
for b in bench supervisor gateway; do
	[ -x "$BIN/$b" ] || die "$BIN/$b missing: run make setup"
done

# bench handles SIGINT and SIGTERM itself: it stops the stack in order and
# checks that nothing is left. It runs in the background so that a SIGTERM
# sent to this script alone reaches it too; the second wait collects its
# real status after a trap interrupted the first.
"$BIN/bench" -bin "$BIN" -venv "$VENV" -runner "$ROOT/runner/runner.py" "$@" &
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
