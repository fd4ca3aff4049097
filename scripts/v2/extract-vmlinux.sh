#!/usr/bin/env bash
# extract-vmlinux.sh VMLINUZ > vmlinux: the uncompressed ELF kernel inside a
# bzImage. The compressed payload starts at one of the decompressors' magic
# numbers; try each occurrence until one decompresses to an ELF file.
set -euo pipefail
img="$1"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
try() { # magic-as-grep-pattern decompressor...
	local magic="$1" off
	shift
	for off in $(LC_ALL=C grep -aboP "$magic" "$img" | cut -d: -f1); do
		tail -c +$((off + 1)) "$img" | "$@" >"$tmp" 2>/dev/null || true
		if [ "$(head -c 4 "$tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
			cat "$tmp"
			exit 0
		fi
	done
}
try '\x28\xb5\x2f\xfd' zstd -dc
try '\xfd\x37\x7a\x58\x5a\x00' xz -dc
try '\x1f\x8b\x08' gzip -dc
try '\x5d\x00\x00\x00' xz -dc --format=lzma
echo "extract-vmlinux: no ELF kernel found in $img" >&2
exit 1
