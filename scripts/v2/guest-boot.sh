#!/bin/bash
# pyexec-v2-boot: baked into the test guest's image and started by systemd at
# boot (pyexec-v2-test.service). It mounts the host's checkout (9p tag "src",
# read-only) and results directory (9p tag "results"), runs the checkout's
# scripts/v2/guest.sh, records its exit code, and powers the guest off. Kept
# minimal on purpose: the test logic lives in the checkout, so changing it
# needs no new image.
set -u
mkdir -p /mnt/src /mnt/results
opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts,ro" src /mnt/src &&
	mount -t 9p -o "$opts" results /mnt/results || {
	echo "pyexec-v2-boot: cannot mount the 9p shares" >/dev/console
	systemctl poweroff --no-block
	exit 1
}
rc=0
/bin/bash /mnt/src/scripts/v2/guest.sh 2>&1 | tee /mnt/results/guest.log >/dev/console
rc=${PIPESTATUS[0]}
echo "$rc" >/mnt/results/rc
sync
systemctl poweroff --no-block
