#!/bin/sh
# Vendors into bpf/include/ the kernel UAPI and libbpf headers that the BPF
# programs include, so that `make generate` needs nothing but clang-16 on any
# machine. The set is what clang reports bpf/ftpgate.c actually includes, no
# more; the files are copied verbatim, licence headers intact, from Debian's
# linux-libc-dev and libbpf-dev (installed first if missing).
#   scripts/update-headers.sh       (make update-headers)
set -eu

cd "$(dirname "$0")/.."
scripts/deps.sh headers

dest=bpf/include
# asm/ lives in the architecture's multiarch directory (x86_64-linux-gnu, ...)
multiarch=$(dpkg -L linux-libc-dev | sed -n 's|^/usr/include/\([^/]*\)/asm/types\.h$|\1|p' | head -n 1)
[ -n "$multiarch" ] || { echo "update-headers: no asm/types.h in linux-libc-dev" >&2; exit 1; }

# -nostdinc: every header must come from the two packages, none from clang
headers=$(clang-16 -target bpfel -nostdinc -isystem "/usr/include/$multiarch" -isystem /usr/include \
	-M -MT x bpf/ftpgate.c | tr ' \\' '\n\n' | grep '^/usr/include/' | sort -u)

rm -rf "$dest"
for h in $headers; do
	rel=${h#/usr/include/}
	rel=${rel#"$multiarch"/}
	mkdir -p "$dest/$(dirname "$rel")"
	cp "$h" "$dest/$rel"
done

# the packages' licence statements travel with the files
mkdir -p "$dest/copyright"
for pkg in linux-libc-dev libbpf-dev; do
	if [ -f "/usr/share/doc/$pkg/copyright" ]; then
		cp "/usr/share/doc/$pkg/copyright" "$dest/copyright/$pkg"
	else
		echo "update-headers: /usr/share/doc/$pkg/copyright missing (dpkg path-exclude?)" >&2
	fi
done

{
	echo "Copied verbatim by scripts/update-headers.sh (make update-headers); do not edit."
	echo "Licences: the SPDX line at the top of each file; for the few without one,"
	echo "the package's statement in copyright/."
	dpkg-query -W -f '${Package} ${Version} ${Architecture}\n' linux-libc-dev libbpf-dev
} >"$dest/SOURCE"

echo "update-headers: $(echo "$headers" | wc -l) headers in $dest"
