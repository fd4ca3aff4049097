#!/usr/bin/env bash
# test-v2.sh (make test-v2): prove the service on a real cgroup v2 kernel.
#
#   1. image: build, once, a Debian bookworm guest (scripts/v2/build-image.sh;
#      cached under /var/cache/python-executor/v2/<hash of its recipe>);
#   2. build: the Go binaries and `go test -c` test binaries, on the host,
#      static (CGO_ENABLED=0), into bin/v2;
#   3. container image: the image of make test-image (built with podman on
#      the host by scripts/image/test.sh build, a cache hit after make
#      test-image), saved with `podman save` under $CACHE/container-image
#      (keyed by the image's id) and shared with the guest read-only;
#   4. boot: the guest under QEMU's TCG emulation (this kind of host has no
#      usable KVM), systemd.unified_cgroup_hierarchy=1, user-mode networking,
#      the checkout shared read-only over 9p and a results directory writable;
#   5. tests: the guest runs scripts/v2/guest.sh (both engines, end-to-end
#      and adversarial suites, the service inside a systemd unit and at a
#      container-like cgroup root, the image under podman in the README's
#      recipes, leftover checks) and powers off.
#
# Prints the guest's summary and exits non-zero naming the stage that failed.
# Needs root. Environment: PYEXEC_V2_CACHE (image cache), PYEXEC_V2_TIMEOUT
# (seconds the guest may run, default 3600), PYEXEC_V2_BOOT_TIMEOUT (seconds
# until its tests start, default 600), PYEXEC_V2_MEM_MB (default 3072),
# PYEXEC_V2_STAGES (comma-separated guest stages to run, e.g. jail,e2e-warm;
# default all: see scripts/v2/guest.sh), PYEXEC_V2_IMAGE_MODES (the
# recipes the guest's image stage runs, default "default privileged-warm
# leastpriv-v2-warm"), PYEXEC_V2_IMAGE (an image archive saved beforehand
# with scripts/image/test.sh save, alone in its directory, tested instead of
# building one), IMAGE_TEST_LOCK (a lock file held while podman builds and
# saves the image on the host).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${PYEXEC_V2_CACHE:-/var/cache/python-executor/v2}"
TIMEOUT="${PYEXEC_V2_TIMEOUT:-3600}"
MEM="${PYEXEC_V2_MEM_MB:-3072}"

fail() { # fail STAGE MESSAGE
	echo "test-v2: FAILED at stage '$1': $2" >&2
	exit 1
}
say() { echo "test-v2: $*" >&2; }

[ "$(id -u)" = 0 ] || fail setup "must run as root (debootstrap, chroot, the guest image cache)"
case "$ROOT" in *[[:space:]]*) fail setup "the checkout path '$ROOT' has white space (it goes on the guest's kernel command line)" ;; esac
t0=$(date +%s)

say "stage image: building or reusing the guest image"
mkdir -p "$CACHE"
# One build at a time per cache: a second run waits, then reuses the image.
IMG="$(flock "$CACHE/.build.lock" "$ROOT/scripts/v2/build-image.sh" | tail -1)" || fail image "scripts/v2/build-image.sh failed (see above)"
for f in rootfs.img vmlinux initrd.img; do
	[ -f "$IMG/$f" ] || fail image "$IMG/$f missing"
done
say "image: $IMG ($(($(date +%s) - t0))s)"

say "stage build: binaries and test binaries for the guest (bin/v2)"
command -v go >/dev/null || fail build "go is not on PATH"
mkdir -p "$ROOT/bin/v2"
(
	cd "$ROOT"
	export CGO_ENABLED=0
	go build -o bin/v2/ ./cmd/supervisor ./cmd/gateway &&
		go test -c -o bin/v2/e2e.test ./gateway/e2e &&
		go test -c -o bin/v2/supervisor.test ./supervisor &&
		go test -c -o bin/v2/jail.test ./internal/jail
) || fail build "go build / go test -c failed"

# want STAGE: the guest runs STAGE (PYEXEC_V2_STAGES empty runs them all).
want() { [ -z "${PYEXEC_V2_STAGES:-}" ] || [[ ",$PYEXEC_V2_STAGES," == *",$1,"* ]]; }
IMGDIR="$CACHE/container-image"
mkdir -p "$IMGDIR"
if { want image || want image-subtract; } && [ -n "${PYEXEC_V2_IMAGE:-}" ]; then
	# An archive saved beforehand (scripts/image/test.sh save DIR), e.g. by
	# a job that built and tested the image already: shared as it is.
	[ -s "$PYEXEC_V2_IMAGE" ] || fail container-image "PYEXEC_V2_IMAGE=$PYEXEC_V2_IMAGE is no image archive"
	IMGDIR="$(dirname "$(realpath "$PYEXEC_V2_IMAGE")")"
	[ "$(ls "$IMGDIR"/*.tar | wc -l)" = 1 ] || fail container-image "$IMGDIR must hold that one archive (*.tar) only"
	say "container image: $PYEXEC_V2_IMAGE (PYEXEC_V2_IMAGE, not rebuilt)"
elif want image || want image-subtract; then
	say "stage container-image: the image (scripts/image/test.sh build), saved for the guest"
	i0=$(date +%s)
	lock=()
	[ -z "${IMAGE_TEST_LOCK:-}" ] || lock=(flock "$IMAGE_TEST_LOCK")
	"${lock[@]}" "$ROOT/scripts/image/test.sh" build || fail container-image "scripts/image/test.sh build failed (see above)"
	tarball="$("${lock[@]}" "$ROOT/scripts/image/test.sh" save "$IMGDIR" | tail -1)" || fail container-image "podman save failed (see above)"
	[ -s "$tarball" ] || fail container-image "no image archive in $IMGDIR"
	say "container image: $tarball ($(($(stat -c %s "$tarball") / 1000000)) MB, $(($(date +%s) - i0))s)"
fi

RES="$(mktemp -d "${TMPDIR:-/tmp}/pyexec-v2-results.XXXXXX")"
chmod 0777 "$RES"
say "stage boot: QEMU TCG guest (results in $RES; the console is echoed below)"
for b in qemu-system-x86_64 timeout; do command -v "$b" >/dev/null || fail boot "$b missing"; done
: >"$RES/console.log"
# thread=multi: one host thread per virtual CPU. snapshot=on: the cached
# image is never written; the guest's writes go to a throw-away overlay.
timeout --kill-after=30 "$TIMEOUT" qemu-system-x86_64 \
	-accel tcg,thread=multi -cpu max -smp 2 -m "$MEM" \
	-display none -monitor none -no-reboot \
	-serial "file:$RES/console.log" \
	-kernel "$IMG/vmlinux" -initrd "$IMG/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1 mitigations=off loglevel=3 systemd.show_status=0 pyexec.src=$ROOT${PYEXEC_V2_STAGES:+ pyexec.stages=$PYEXEC_V2_STAGES}${PYEXEC_V2_IMAGE_MODES:+ pyexec.imagemodes=${PYEXEC_V2_IMAGE_MODES// /,}}" \
	-drive "file=$IMG/rootfs.img,format=raw,if=virtio,snapshot=on" \
	-nic user,model=virtio-net-pci \
	-virtfs "local,path=$ROOT,mount_tag=src,security_model=none,readonly=on" \
	-virtfs "local,path=$RES,mount_tag=results,security_model=none" \
	-virtfs "local,path=$IMGDIR,mount_tag=image,security_model=none,readonly=on" \
	>"$RES/qemu.log" 2>&1 &
qemu_pid=$!
# The console, echoed as it comes; tail ends with QEMU.
tail -F -n +1 --pid="$qemu_pid" "$RES/console.log" 2>/dev/null | sed -u 's/^/  guest| /' &
tail_pid=$!
# A guest that never reaches its tests is a boot failure, found in minutes
# rather than at the end of the whole budget (it boots in about 30 s).
boot_deadline=$(($(date +%s) + ${PYEXEC_V2_BOOT_TIMEOUT:-600}))
booted=0
while kill -0 "$qemu_pid" 2>/dev/null; do
	if [ "$booted" = 0 ] && [ -s "$RES/guest.log" ]; then
		booted=1
		say "booted in $(($(date +%s) - t0))s (from the start of make test-v2)"
	fi
	if [ "$booted" = 0 ] && [ "$(date +%s)" -gt "$boot_deadline" ]; then
		kill "$qemu_pid" 2>/dev/null
		wait "$qemu_pid" 2>/dev/null
		kill "$tail_pid" 2>/dev/null
		fail boot "the guest did not start its tests within ${PYEXEC_V2_BOOT_TIMEOUT:-600}s (console: $RES/console.log)"
	fi
	sleep 2
done
set +e
wait "$qemu_pid"
qrc=$?
set -e
sleep 1
kill "$tail_pid" 2>/dev/null || true
wait "$tail_pid" 2>/dev/null || true
say "guest ran $(($(date +%s) - t0))s in total"

if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	[ -f "$RES/summary" ] && cat "$RES/summary" >&2
	fail tests "the guest did not finish within ${TIMEOUT}s (PYEXEC_V2_TIMEOUT); logs in $RES"
fi
if [ "$qrc" != 0 ]; then
	fail boot "qemu exited $qrc: $(tail -5 "$RES/qemu.log")"
fi
if [ ! -f "$RES/guest.log" ]; then
	fail boot "the guest powered off without starting the tests (see $RES/console.log)"
fi
if [ ! -f "$RES/rc" ]; then
	[ -f "$RES/summary" ] && cat "$RES/summary" >&2
	fail tests "the guest stopped before the tests finished (see $RES/guest.log)"
fi
echo "test-v2: summary:"
cat "$RES/summary"
rc="$(cat "$RES/rc")"
if [ "$rc" != 0 ]; then
	# What failed, not only where: CI keeps the end of this output and the
	# results directory is gone with its machine.
	for name in $(grep '^FAIL' "$RES/summary" | cut -d' ' -f2); do
		[ -f "$RES/$name.log" ] || continue
		echo "test-v2: $name: the last failures in $name.log:" >&2
		{ grep -E -- '--- FAIL|^ +[a-z_]+_test\.go:[0-9]+: |FAILED|^image\[' "$RES/$name.log" || tail -15 "$RES/$name.log"; } |
			tail -15 | cut -c1-300 >&2
	done
	fail tests "$(grep -c '^FAIL' "$RES/summary") stage(s) failed in the guest: $(grep '^FAIL' "$RES/summary" | cut -d' ' -f2 | tr '\n' ' ')(logs in $RES)"
fi
say "PASS (logs in $RES)"
