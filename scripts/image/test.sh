#!/usr/bin/env bash
# test.sh (make test-image): build the image with podman and test it as users
# run it. Stages, each named when it fails:
#
#   podman setup    install podman from Debian's packages when missing, with a
#                   config of the project's own (scripts/image/podman.sh)
#   base images     the Dockerfile's two bases: pulled when a registry
#                   answers, else bootstrapped with debootstrap (cached)
#   build           podman build, the CA bundle as a build secret; then check
#                   that the bundle is in no file of the image
#   subtract        each flag of the least-privilege recipe for this host's
#                   cgroup version is needed (subtract, below)
#   start           run the image in each run mode (below) on a free loopback
#                   port and time it until /health answers
#   tests           the end-to-end contract and the adversarial suite
#                   (gateway/e2e) over HTTP against the container, their host
#                   checks run inside it (PYEXEC_E2E_URL, see
#                   internal/supervisortest/remote.go)
#   shutdown        podman stop -t 30 (SIGTERM) while a 3 s execution is in
#                   flight: it gets its answer, a new request during the
#                   drain gets 503 unavailable; then exit status 0, no error
#                   in the log after the signal, no cgroup left behind
#
# Run modes are the `docker run` recipes the README lists (IMAGE_TEST_MODES
# picks some; all by default). A new one is one line in mode_flags.
#
# Environment: IMAGE_TEST_MODES, IMAGE_TEST_LOCK (a lock file held while a
# container runs, for machines where other jobs test on the same host),
# IMAGE_TAG (python-executor:test), GO_IMAGE, PYTHON_IMAGE, CA_BUNDLE,
# IMAGE_STATE_DIR, IMAGE_NO_PULL=1 (skip trying registries), E2E_TEST_BIN (a
# `go test -c` binary of gateway/e2e to run instead of go test),
# PODMAN_CGROUP_MANAGER (cgroupfs; systemd in the cgroup v2 guest),
# IMAGE_EXTRA_ENV (KEY=VALUE ... passed to every container with -e),
# IMAGE_DRAIN_SECONDS (the execution in flight at SIGTERM, default 3).
#
#   scripts/image/test.sh                  every stage
#   scripts/image/test.sh build            up to the build only
#   scripts/image/test.sh save DIR         podman save the image into DIR (cached by id)
#   scripts/image/test.sh load FILE        podman load an image saved elsewhere
#   scripts/image/test.sh modes            every mode against an image already there
#   scripts/image/test.sh run-mode MODE    start, tests and shutdown of one mode
#   scripts/image/test.sh subtract MODE    each flag of MODE's recipe is needed
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/image/podman.sh
. "$ROOT/scripts/image/podman.sh"

IMAGE_TAG="${IMAGE_TAG:-localhost/python-executor:test}"
# By default every recipe for this host's cgroup version.
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
	IMAGE_TEST_MODES="${IMAGE_TEST_MODES:-default privileged-warm privileged-cold leastpriv-v2-warm leastpriv-v2-cold}"
else
	IMAGE_TEST_MODES="${IMAGE_TEST_MODES:-default privileged-warm privileged-cold leastpriv-warm leastpriv-cold}"
fi
SUMMARY="$IMAGE_RUN_DIR/summary.txt"

# The least privilege that works on a cgroup v1 host, found by taking each
# flag away in turn (podman 4.3, runc): without SYS_ADMIN the supervisor
# cannot unshare its mount namespace; without the read-write cgroup bind it
# finds cgroups read-only and refuses to start; without unmasking /proc the
# kernel refuses nsjail a fresh /proc over podman's masked paths. The default
# seccomp profile may stay (it allows namespaces and mounts to SYS_ADMIN),
# and the cgroup namespace does not matter once the hierarchy is bound.
LEASTPRIV_FLAGS=(--cap-add SYS_ADMIN --cap-add SYS_NICE --security-opt 'unmask=/proc/*' -v /sys/fs/cgroup:/sys/fs/cgroup:rw)
# The least privilege that works on a cgroup v2 host (podman 4.3, runc, the
# systemd cgroup manager; tested in the guest of make test-v2, each flag taken
# away in turn there). The container has a cgroup namespace of its own, and
# unmasking /sys/fs/cgroup makes podman mount that namespace's cgroup2
# read-write: the supervisor delegates from the container's own cgroup and
# sees nothing of the host's. Binding the host's tree (the v1 recipe) would
# show the host's root where the namespace says "/".
LEASTPRIV_V2_FLAGS=(--cap-add SYS_ADMIN --cap-add SYS_NICE --security-opt 'unmask=/proc/*' --security-opt unmask=/sys/fs/cgroup)

# mode_flags MODE: the engine, the isolation /health must report, then the
# podman run flags of a run mode. A mode is one line here (and a name in
# IMAGE_TEST_MODES); e.g. a run with no flags at all: `echo warm container`.
mode_flags() {
	case "$1" in
	# The seed's `docker run -p 8080:8080 python-executor`: Docker's default
	# capabilities, seccomp profile, masked /proc and read-only cgroups. The
	# image's PYEXEC_ISOLATION=auto picks the container tier, which runs the
	# cold engine.
	default) echo cold container ;;
	privileged-warm) echo warm full --privileged ;;
	privileged-cold) echo cold full --privileged ;;
	leastpriv-warm) echo warm full "${LEASTPRIV_FLAGS[@]}" ;;
	leastpriv-cold) echo cold full "${LEASTPRIV_FLAGS[@]}" ;;
	leastpriv-v2-warm) echo warm full "${LEASTPRIV_V2_FLAGS[@]}" ;;
	leastpriv-v2-cold) echo cold full "${LEASTPRIV_V2_FLAGS[@]}" ;;
	*) die "unknown run mode $1" ;;
	esac
}

# Tests of gateway/e2e that need a stack of their own and so run only under
# make test: each starts scripts/run.sh or setup.sh on the checkout, or kills
# and restarts the supervisor, which a running container does not allow.
# Any other test runs against the container; one that cannot fails loudly
# (supervisortest.StartStack refuses flags it cannot honour) and belongs here.
# Also those that start a supervisor with flags of their own (-slots,
# -isolation, -degraded, -zygotes...) or remove the service's cgroups, and
# the playground's browser tests (the guest of make test-v2 has no browser;
# the page is part of the gateway binary the host tests run), and the
# metrics test (the metrics listener is loopback-only inside the container).
# IMAGE_SKIP adds more (a regexp of top-level test names; the v2 guest's).
LOCAL_ONLY='^(TestPlayground|TestPlaygroundOff|TestRunScript|TestSupervisorRestart|TestSetupIsIdempotent|TestSIGTERMDrains|TestQueueWaitBounded|TestConnectionFloods|TestCPUFairness|TestHealthReflectsZygotes|TestHealthReflectsCgroups|TestDegraded.*|TestContainerTier.*|TestAPIKeys.*|TestMetricsAndLogs'"${IMAGE_SKIP:+|$IMAGE_SKIP}"')$'

free_port() {
	"$(command -v python3 || command -v python3.11)" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now_ms() { date +%s%3N; }

# run_mode MODE: start a container in MODE, run the suites against it, stop
# it and check the shutdown. Everything it started is removed on the way out.
run_mode() {
	local mode="$1" engine isolation flags
	read -r engine isolation flags <<<"$(mode_flags "$mode")"
	# shellcheck disable=SC2206
	local fl=($flags)
	local name="pyexec-img-$mode-$$"
	# A cgroup parent of its own: never the host tests' nor another run's.
	local parent="pyexec-img-$mode-$$"
	local port
	port="$(free_port)"
	local url="http://127.0.0.1:$port"
	# Whatever happens, keep the container's log and remove it.
	local keep="$IMAGE_RUN_DIR/container-$mode.log"
	trap 'podman logs "'"$name"'" >"'"$keep"'" 2>&1; podman rm -f -t 0 "'"$name"'" >/dev/null 2>&1 || true' EXIT

	stage "start ($mode)"
	# The canary only marks the supervisor's environment (the suites check
	# that no execution sees it); it changes nothing else. The default mode
	# sets nothing more: the image's own defaults are what is tested.
	local env=(-e PYEXEC_CANARY=canary-supervisor-env-31337)
	[ "$mode" = default ] || env+=(-e ENGINE="$engine" -e PYEXEC_CGROUP_PARENT="$parent")
	# IMAGE_EXTRA_ENV (KEY=VALUE ...): only where the machine needs it; the
	# cgroup v2 guest of make test-v2 waits longer for a slot or a zygote
	# under emulation, as its other suites do.
	local kv
	for kv in ${IMAGE_EXTRA_ENV:-}; do env+=(-e "$kv"); done
	say "podman run ${fl[*]} -p 127.0.0.1:$port:8080 ${env[*]}"
	local t0 t1
	t0="$(now_ms)"
	podman run -d --name "$name" "${fl[@]}" -p "127.0.0.1:$port:8080" "${env[@]}" \
		"$IMAGE_TAG" >/dev/null 2>"$IMAGE_RUN_DIR/run.err" ||
		die "podman run failed: $(cat "$IMAGE_RUN_DIR/run.err")"
	local deadline=$((SECONDS + 180)) health=""
	while :; do
		health="$(curl -fsS --max-time 5 "$url/health" 2>/dev/null || true)"
		[ -n "$health" ] && break
		if [ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" != true ]; then
			die "the container exited during start-up (status $(podman inspect --format '{{.State.ExitCode}}' "$name")):
$(podman logs "$name" 2>&1 | tail -30)"
		fi
		[ "$SECONDS" -lt "$deadline" ] || die "no healthy /health within 180s:
$(podman logs "$name" 2>&1 | tail -30)"
		sleep 0.2
	done
	t1="$(now_ms)"
	local startup_ms=$((t1 - t0))
	say "healthy after ${startup_ms} ms: $health"
	case "$health" in
	*'"engine":"'"$engine"'"'*'"isolation":"'"$isolation"*) ;;
	*) die "/health is $health; want engine $engine with isolation $isolation" ;;
	esac
	case "$health" in
	*'"tier":"'"$isolation"'"'*) ;;
	*) die "/health is $health; want tier $isolation" ;;
	esac
	# The container tier names what it lacks; the full tier lacks nothing.
	if [ "$isolation" = container ]; then
		case "$health" in
		*'"missing":["'*pid_namespace*network_namespace*memory_cgroup*) ;;
		*) die "/health is $health; want the missing protections named" ;;
		esac
	else
		case "$health" in *'"missing":[]'*) ;; *) die "/health is $health; want nothing missing" ;; esac
		# The full tier on this host's cgroup version, not a fallback.
		local cgv=v1
		[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && cgv=v2
		case "$health" in *'"cgroups":"'"$cgv"'"'*) ;; *) die "/health is $health; want cgroups $cgv" ;; esac
	fi
	hello_latency "$url"

	stage "tests ($mode)"
	# CGO off: the test binary is copied into the container for its host
	# checks and must not depend on the host's C library.
	# E2E_TEST_BIN: a test binary built beforehand (go test -c, static), run
	# in its package's directory as go test would, where there is no Go (the
	# cgroup v2 guest of make test-v2).
	local gotest_rc=0 suite=(go test -v -count=1 -timeout 30m -skip "$LOCAL_ONLY" ./gateway/e2e)
	if [ -n "${E2E_TEST_BIN:-}" ]; then
		suite=(env -C "$ROOT/gateway/e2e" "$E2E_TEST_BIN" -test.v -test.count=1 -test.timeout 30m -test.skip "$LOCAL_ONLY")
	fi
	PYEXEC_E2E_URL="$url" \
		PYEXEC_E2E_EXEC="podman exec -i $name" \
		PYEXEC_E2E_LOGS="podman logs $name" \
		PYEXEC_E2E_CGROUP_PARENT="$parent" \
		PYEXEC_TEST_ENGINES="$engine" \
		CGO_ENABLED=0 \
		"${suite[@]}" >"$IMAGE_RUN_DIR/tests-$mode.log" 2>&1 || gotest_rc=$?
	local passed failed skipped
	passed="$(grep -c -- '--- PASS' "$IMAGE_RUN_DIR/tests-$mode.log" || true)"
	failed="$(grep -c -- '--- FAIL' "$IMAGE_RUN_DIR/tests-$mode.log" || true)"
	skipped="$(grep -c -- '--- SKIP' "$IMAGE_RUN_DIR/tests-$mode.log" || true)"
	# The failures with their messages, and go test's closing lines.
	grep -E -- '^(ok|FAIL)|--- FAIL|^ +[a-z_]+(_test)?\.go:[0-9]+: ' "$IMAGE_RUN_DIR/tests-$mode.log" | tail -60 >&2 || true
	say "$passed passed, $failed failed, $skipped skipped (log: $IMAGE_RUN_DIR/tests-$mode.log)"
	[ "$gotest_rc" = 0 ] || die "the suites failed against the container (log: $IMAGE_RUN_DIR/tests-$mode.log, the container's: $IMAGE_RUN_DIR/container-$mode.log; its last error-level lines, some provoked by the attacks:
$(podman logs "$name" 2>&1 | grep -E '"severity":"(ERROR|CRITICAL|ALERT)"' | tail -20)"
	# Nothing may skip: a check that cannot run against the container fails.
	[ "$skipped" = 0 ] || die "$skipped tests skipped against the container"
	[ "$passed" -ge 50 ] || die "only $passed tests passed: the suites did not run"

	stage "shutdown ($mode)"
	local id before s0 s1
	id="$(podman inspect --format '{{.Id}}' "$name")"
	before="$(podman logs "$name" 2>&1 | wc -c)"
	# The drain through the image: a ~3 s execution is in flight when
	# `podman stop` sends SIGTERM; it still gets its answer, a new request
	# during the drain gets 503 unavailable, and then the container exits.
	# IMAGE_DRAIN_SECONDS lengthens the execution where podman itself takes
	# seconds to deliver the signal (under emulation), so the drain is still
	# under way when it arrives; it must still end within the drain limit
	# (8 s unless IMAGE_EXTRA_ENV sets PYEXEC_DRAIN_TIMEOUT).
	local dir="$IMAGE_RUN_DIR/drain-$mode" cpid spid ds="${IMAGE_DRAIN_SECONDS:-3}"
	rm -rf "$dir" && mkdir -p "$dir"
	curl -sS --max-time 60 -o "$dir/inflight.json" -w '%{http_code}' -H 'Content-Type: application/json' \
		-d '{"script":"import time\ndef main():\n    time.sleep('"$ds"')\n    return \"drained\"\n","timeout":'"$((ds + 7))"'}' \
		"$url/execute" >"$dir/inflight.code" 2>"$dir/inflight.err" &
	cpid=$!
	sleep 1
	s0="$(now_ms)"
	podman stop -t 30 "$name" >"$dir/stop.out" 2>&1 &
	spid=$!
	local hc="" i
	for i in $(seq 100); do
		hc="$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$url/health" 2>/dev/null || true)"
		[ "$hc" = 503 ] && break
		sleep 0.05
	done
	[ "$hc" = 503 ] || die "/health answered $hc, not 503, within 5 s of SIGTERM"
	local nc
	nc="$(curl -sS --max-time 30 -o "$dir/new.json" -w '%{http_code}' -D "$dir/new.headers" -H 'Content-Type: application/json' \
		-d '{"script":"def main():\n    return 1\n"}' "$url/execute" 2>"$dir/new.err" || true)"
	{ [ "$nc" = 503 ] && grep -q '"unavailable"' "$dir/new.json" && grep -qi '^retry-after:' "$dir/new.headers"; } ||
		die "a new request during the drain got $nc $(cat "$dir/new.json" "$dir/new.err" 2>/dev/null), want 503 unavailable with Retry-After"
	wait "$cpid" || die "the in-flight request failed: $(cat "$dir/inflight.err")"
	{ [ "$(cat "$dir/inflight.code")" = 200 ] && grep -q '"result":"drained"' "$dir/inflight.json"; } ||
		die "the request in flight at SIGTERM got $(cat "$dir/inflight.code") $(cat "$dir/inflight.json"), want 200 with its result"
	wait "$spid" || die "podman stop failed: $(cat "$dir/stop.out")"
	s1="$(now_ms)"
	say "drain: the request in flight answered 200, a new one 503 unavailable"
	local code
	code="$(podman inspect --format '{{.State.ExitCode}}' "$name")"
	local after
	after="$(podman logs "$name" 2>&1 | tail -c +$((before + 1)))"
	[ "$code" = 0 ] || die "exit status $code after SIGTERM (want 0); log after the signal:
$after"
	if grep -E '"severity":"(ERROR|CRITICAL|ALERT)"|^panic:|run: error' <<<"$after"; then
		die "errors in the log after SIGTERM (above)"
	fi
	podman logs "$name" >"$keep" 2>&1
	podman rm "$name" >/dev/null || die "podman rm failed"
	trap - EXIT
	local left
	left="$(find /sys/fs/cgroup -maxdepth 5 -type d \( -name "$parent" -o -name "*$id*" \) 2>/dev/null || true)"
	[ -z "$left" ] || die "cgroups left behind after the container stopped:
$left"
	say "stopped cleanly in $((s1 - s0)) ms"
	echo "$mode: start-up ${startup_ms} ms (podman run to a healthy /health), hello ${HELLO_MS}, SIGTERM to exit $((s1 - s0)) ms (a 3 s execution in flight)" >>"$SUMMARY"
}

# hello_latency URL: the seed's hello example, 20 times in a row after a
# warm-up; sets HELLO_MS to the median and the slowest round trip.
hello_latency() {
	local url="$1" i times=()
	curl -fsS --max-time 30 -H 'Content-Type: application/json' -d '{"script":"def main():\n    return \"hello\"\n"}' "$url/execute" >/dev/null ||
		die "the hello example failed"
	for i in $(seq 20); do
		times+=("$(curl -fsS --max-time 30 -o /dev/null -w '%{time_total}' -H 'Content-Type: application/json' \
			-d '{"script":"def main():\n    return \"hello\"\n"}' "$url/execute")") || die "the hello example failed"
	done
	HELLO_MS="$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median %.0f ms, max %.0f ms", a[int((NR+1)/2)]*1000, a[NR]*1000}')"
	say "hello: $HELLO_MS"
}

build() {
	stage "podman setup"
	ensure_podman

	stage "base images"
	[ -s "$CA_BUNDLE" ] || die "no CA bundle at $CA_BUNDLE (set CA_BUNDLE)"
	ensure_base go "$GO_IMAGE"
	ensure_base python "$PYTHON_IMAGE"

	stage "build"
	local b0=$SECONDS
	podman build --pull=never "${ULIMIT_FLAGS[@]}" --secret id=ca_bundle,src="$CA_BUNDLE" \
		--build-arg GO_IMAGE="$(qualified "$GO_IMAGE")" --build-arg PYTHON_IMAGE="$(qualified "$PYTHON_IMAGE")" \
		-t "$IMAGE_TAG" . >"$IMAGE_RUN_DIR/build.log" 2>&1 ||
		die "podman build failed (log: $IMAGE_RUN_DIR/build.log):
$(tail -30 "$IMAGE_RUN_DIR/build.log")"
	say "built $IMAGE_TAG in $((SECONDS - b0)) s"
	check_no_ca
}

# run_modes: every mode of IMAGE_TEST_MODES against the image, which must be
# there (built, or loaded with `load`).
run_modes() {
	local t_all=$SECONDS size
	size="$(podman image inspect --format '{{.Size}}' "$IMAGE_TAG")" || die "no image $IMAGE_TAG"
	: >"$SUMMARY"
	echo "image $IMAGE_TAG: $((size / 1000000)) MB ($size bytes); cgroup $([ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && echo v2 || echo v1), podman $(podman version --format '{{.Client.Version}}'), cgroup manager ${PODMAN_CGROUP_MANAGER:-cgroupfs}" >>"$SUMMARY"
	# Containers of a run that was killed would hold ports and cgroups.
	podman ps -a --format '{{.Names}}' | grep '^pyexec-img-' | xargs -r podman rm -f -t 0 >/dev/null || true
	local mode
	for mode in $IMAGE_TEST_MODES; do
		if [ -n "${IMAGE_TEST_LOCK:-}" ]; then
			# The lock is held only while a container runs.
			flock "$IMAGE_TEST_LOCK" "$0" run-mode "$mode" || exit 1
		else
			(run_mode "$mode") || exit 1
		fi
	done
	STAGE=done
	echo "== image: every run mode passed in $((SECONDS - t_all)) s" >&2
	cat "$SUMMARY" >&2
}

main() {
	local t_all=$SECONDS
	build
	# Each flag of the least-privilege recipe of this host's cgroup version
	# is needed (a recipe is one of the run modes below).
	local lp=leastpriv-warm
	[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && lp=leastpriv-v2-warm
	if [ -n "${IMAGE_TEST_LOCK:-}" ]; then
		flock "$IMAGE_TEST_LOCK" "$0" subtract "$lp" || exit 1
	else
		(subtract "$lp") || exit 1
	fi
	run_modes
	echo "== image: all stages passed in $((SECONDS - t_all)) s" >&2
}

# check_no_ca: the CA bundle handed to the build as a secret is in no file of
# the final image (compared by content), and the secret's mount point is empty.
check_no_ca() {
	local mnt size sum f
	mnt="$(podman image mount "$IMAGE_TAG")" || die "podman image mount failed"
	size="$(stat -c %s "$CA_BUNDLE")"
	sum="$(sha256sum <"$CA_BUNDLE" | cut -d' ' -f1)"
	while IFS= read -r -d '' f; do
		if [ "$(sha256sum <"$f" | cut -d' ' -f1)" = "$sum" ]; then
			podman image unmount "$IMAGE_TAG" >/dev/null
			die "the build's CA bundle is in the image as ${f#"$mnt"}"
		fi
	done < <(find "$mnt" -xdev -type f -size "${size}c" -print0)
	if [ -n "$(ls -A "$mnt/run/secrets" 2>/dev/null)" ]; then
		podman image unmount "$IMAGE_TAG" >/dev/null
		die "the image has files under /run/secrets"
	fi
	podman image unmount "$IMAGE_TAG" >/dev/null
	say "the CA bundle is in no file of the image"
}

# subtract MODE: that each flag of MODE's recipe is needed. The container
# starts with all of them, then once without each (a flag and its argument),
# always with PYEXEC_ISOLATION=full and the warm engine, which refuse to serve
# with less than full isolation. A flag is needed when, without it, the
# container exits at start-up, or serves without its spares' scheduling
# policy (SCHED_BATCH: without SYS_NICE the supervisor cannot set it on
# another user's process, and spares then compete with executions). With all
# the flags it must serve with full isolation and SCHED_BATCH spares.
subtract() {
	local mode="$1" engine isolation flags
	read -r engine isolation flags <<<"$(mode_flags "$mode")"
	# shellcheck disable=SC2206
	local fl=($flags) i
	[ $((${#fl[@]} % 2)) = 0 ] || die "the flags of $mode are not flag/argument pairs"
	: >"$IMAGE_RUN_DIR/subtract-$mode.txt"
	for ((i = -2; i < ${#fl[@]}; i += 2)); do
		local use=() j
		for ((j = 0; j < ${#fl[@]}; j += 2)); do
			[ "$j" = "$i" ] || use+=("${fl[$j]}" "${fl[$((j + 1))]}")
		done
		local without="nothing"
		[ "$i" -lt 0 ] || without="${fl[$i]} ${fl[$((i + 1))]}"
		stage "subtract ($mode without $without)"
		local out
		out="$(subtract_one "${use[@]}")"
		say "$out"
		echo "without $without: $out" >>"$IMAGE_RUN_DIR/subtract-$mode.txt"
		if [ "$i" -lt 0 ]; then
			[[ "$out" == "serves: "* ]] || die "with every flag of $mode: $out"
		else
			[[ "$out" != "serves: "* ]] || die "$without is not needed: $out"
		fi
	done
	cat "$IMAGE_RUN_DIR/subtract-$mode.txt" >&2
}

# subtract_one FLAGS...: start the image with FLAGS; print "serves ..." when
# it serves with full isolation and SCHED_BATCH spares, else what it lacks.
subtract_one() {
	local name="pyexec-img-subtract-$$" port url health="" deadline
	port="$(free_port)"
	url="http://127.0.0.1:$port"
	podman run -d --name "$name" "$@" -p "127.0.0.1:$port:8080" -e PYEXEC_ISOLATION=full -e ENGINE=warm \
		"$IMAGE_TAG" >/dev/null 2>"$IMAGE_RUN_DIR/run.err" || {
		echo "podman run refuses: $(tail -1 "$IMAGE_RUN_DIR/run.err")"
		return 0
	}
	deadline=$((SECONDS + 300))
	while [ "$SECONDS" -lt "$deadline" ]; do
		health="$(curl -fsS --max-time 5 "$url/health" 2>/dev/null || true)"
		[ -n "$health" ] && break
		[ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ] || break
		sleep 0.5
	done
	local out
	if [ -z "$health" ]; then
		out="exits at start-up: $(podman logs "$name" 2>&1 | grep -E '"severity":"(ERROR|CRITICAL)"|refus|cannot' | tail -1 | cut -c1-300)"
	else
		# Wait for the spares, then look at every process's policy (3 is
		# SCHED_BATCH).
		curl -fsS --max-time 60 -H 'Content-Type: application/json' -d '{"script":"def main():\n    return 1\n"}' "$url/execute" >/dev/null 2>&1
		sleep 5
		local policies
		policies="$(podman exec "$name" python3.11 -c '
import os
seen = set()
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            seen.add(os.sched_getscheduler(int(p)))
        except OSError:
            pass
print(" ".join(map(str, sorted(seen))))' 2>&1)"
		case "$health" in
		*'"tier":"full"'*'"engine":"warm"'* | *'"engine":"warm"'*'"tier":"full"'*)
			if [[ " $policies " == *" 3 "* ]]; then
				out="serves: full tier, warm engine, SCHED_BATCH spares"
			else
				out="serves without SCHED_BATCH spares (policies seen: $policies)"
			fi
			;;
		*) out="serves with less than full isolation: $health" ;;
		esac
	fi
	podman rm -f -t 5 "$name" >/dev/null 2>&1
	echo "$out"
}

# load FILE: the image from a `podman save` archive (the cgroup v2 guest of
# make test-v2 tests the image the host built).
load() {
	stage "load"
	ensure_podman
	[ -s "$1" ] || die "no image archive at $1"
	# An archive written by save is named by the image's id.
	if [ "$(podman image inspect --format '{{.Id}}' "$IMAGE_TAG" 2>/dev/null)" = "$(basename "$1" .tar)" ]; then
		say "$IMAGE_TAG is loaded already"
		return 0
	fi
	local t0=$SECONDS
	podman load -q -i "$1" >"$IMAGE_RUN_DIR/load.log" 2>&1 || die "podman load failed: $(tail -5 "$IMAGE_RUN_DIR/load.log")"
	podman image exists "$IMAGE_TAG" || die "$1 holds no $IMAGE_TAG: $(cat "$IMAGE_RUN_DIR/load.log")"
	say "loaded $IMAGE_TAG from $1 in $((SECONDS - t0)) s"
}

# save DIR: the image as a `podman save` archive DIR/<image id>.tar, written
# only when that image's is not there yet (older ones are removed); prints its
# path.
save() {
	stage "save"
	ensure_podman
	local id out
	id="$(podman image inspect --format '{{.Id}}' "$IMAGE_TAG")" || die "no image $IMAGE_TAG"
	out="$1/$id.tar"
	mkdir -p "$1"
	if [ ! -s "$out" ]; then
		rm -f "$1"/*.tar "$1"/*.part
		podman save -q -o "$out.part" "$IMAGE_TAG" >"$IMAGE_RUN_DIR/save.log" 2>&1 ||
			die "podman save failed: $(tail -5 "$IMAGE_RUN_DIR/save.log")"
		mv "$out.part" "$out"
	fi
	echo "$out"
}

case "${1:-}" in
load) load "$2" ;;
save) save "$2" ;;
subtract)
	ensure_podman
	subtract "$2"
	;;
modes)
	ensure_podman
	run_modes
	;;
run-mode)
	ensure_podman
	run_mode "$2"
	;;
build) build ;;
"") main ;;
*) die "usage: $0 [build | save DIR | load FILE | modes | run-mode MODE | subtract MODE]" ;;
esac
