#!/usr/bin/env bash
# run.sh: start the whole service in the foreground: the supervisor as root,
# then the gateway as its own unprivileged user, on $PORT (default 8080).
# Ctrl-C or SIGTERM drains and stops both: the gateway first (it lets the
# executions in flight finish, up to PYEXEC_DRAIN_TIMEOUT), then the
# supervisor, which removes its socket and cgroups on the way out; its
# staging mounts die with its mount namespace.
#
# Environment: PORT, ENGINE (warm or cold; default warm, which falls back to
# cold where the host refuses nested namespaces), GATEWAY_USER (pyexec-gw), SANDBOX_USER
# (pyexec-sandbox), and every PYEXEC_* setting of the two binaries (see
# README.md); the gateway gets PORT, GOOGLE_CLOUD_PROJECT (for the logs'
# trace field) and the PYEXEC_* variables, nothing else.
set -euo pipefail

# SIGHUP makes the gateway reread its API keys file (trapped below), but a
# shell cannot trap a signal it was started with ignored, as `nohup` and
# some process managers start it: start over once with SIGHUP's default
# disposition (coreutils env), or the reread would be silently lost.
if [ "$(trap -p HUP)" = "trap -- '' SIGHUP" ] && [ -z "${RUN_SH_HUP_RESET:-}" ] &&
	env --default-signal=HUP true 2>/dev/null; then
	RUN_SH_HUP_RESET=1 exec env --default-signal=HUP "$BASH" "$0" "$@"
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
PORT="${PORT:-8080}"
ENGINE="${ENGINE:-warm}"
GATEWAY_USER="${GATEWAY_USER:-pyexec-gw}"
SANDBOX_USER="${SANDBOX_USER:-pyexec-sandbox}"
SOCKET="${PYEXEC_SUPERVISOR_SOCKET:-/run/python-executor/supervisor.sock}"

die() { echo "run: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root: the supervisor creates namespaces and cgroups (the gateway drops to $GATEWAY_USER)"
case "$ENGINE" in
warm | cold) ;;
*) die "ENGINE=$ENGINE is not available (engines: warm, cold)" ;;
esac
[ -x "$BIN/supervisor" ] && [ -x "$BIN/gateway" ] || die "binaries missing in $BIN: run make setup"
getent passwd "$GATEWAY_USER" >/dev/null || die "no user $GATEWAY_USER: run make setup"

sup_pid=""
gw_pid=""
stop() {
	# One stop at a time; a second signal does not cut the drain short
	# (SIGKILL does, as a container runtime's deadline would).
	trap '' INT TERM
	# The gateway first: it drains (health 503 at once, new requests get
	# unavailable, executions in flight finish for up to the drain limit,
	# PYEXEC_DRAIN_TIMEOUT) and exits. Only then the supervisor, which has
	# nothing left to cancel.
	if [ -n "$gw_pid" ] && kill -TERM "$gw_pid" 2>/dev/null; then
		wait "$gw_pid" 2>/dev/null || true
	fi
	[ -n "$sup_pid" ] && kill -TERM "$sup_pid" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM

"$BIN/supervisor" -socket "$SOCKET" -gateway-user "$GATEWAY_USER" -sandbox-user "$SANDBOX_USER" -engine "$ENGINE" &
sup_pid=$!

# The supervisor runs its start-up self-test before it listens.
for _ in $(seq 1 600); do
	[ -S "$SOCKET" ] && break
	kill -0 "$sup_pid" 2>/dev/null || { wait "$sup_pid" || true; die "the supervisor failed to start"; }
	sleep 0.1
done
[ -S "$SOCKET" ] || { stop; die "the supervisor did not open $SOCKET"; }

gw_env=(PATH=/usr/bin:/bin)
while IFS= read -r kv; do gw_env+=("$kv"); done < <(env | grep -E '^PYEXEC_[A-Z_]+=' || true)
gw_env+=(PORT="$PORT" PYEXEC_SUPERVISOR_SOCKET="$SOCKET")
if [ -n "${GOOGLE_CLOUD_PROJECT:-}" ]; then gw_env+=(GOOGLE_CLOUD_PROJECT="$GOOGLE_CLOUD_PROJECT"); fi

# setpriv drops to the gateway user with no supplementary groups beyond its
# own and no capabilities of any kind; the gateway refuses to run as root.
#
# The checkout may sit where only root can traverse (a `mktemp -d`, /root):
# the gateway user could not reach "$BIN/gateway" by its path. Root opens the
# binary here and the dropped process executes the open file through
# /proc/self/fd, so nothing has to be copied out of the checkout and its
# permissions stay as the user left them. The kernel checks the file's own
# execute bit, not the directories above it. The gateway closes the
# descriptor at start-up.
exec {gw_exe}<"$BIN/gateway" || die "cannot open $BIN/gateway"
setpriv --reuid="$GATEWAY_USER" --regid="$GATEWAY_USER" --init-groups \
	--inh-caps=-all --bounding-set=-all --no-new-privs \
	env -i "${gw_env[@]}" PYEXEC_GATEWAY_EXE_FD="$gw_exe" "/proc/self/fd/$gw_exe" &
gw_pid=$!
exec {gw_exe}<&-

# SIGHUP is for the gateway: it rereads its API keys file (README "API keys
# and quotas"), so `docker kill -s HUP` reaches it through this script.
trap 'kill -HUP "$gw_pid" 2>/dev/null || true' HUP

# Whichever exits first takes the other down. A trapped SIGHUP also ends
# `wait` (status 129) while both still run: then wait again.
set +e
while :; do
	wait -n "$sup_pid" "$gw_pid"
	rc=$?
	if [ "$rc" -gt 128 ] && kill -0 "$sup_pid" 2>/dev/null && kill -0 "$gw_pid" 2>/dev/null; then
		continue
	fi
	break
done
stop
exit "$rc"
