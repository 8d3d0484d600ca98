#!/bin/sh
# Fetches public captures of real FTP sessions into .cache/captures/ for the
# replay tests (cmd/ftpgate/captures_test.go). They are third-party data and
# never committed: nDPI's test captures (LGPL-3.0-or-later), taken from
# Debian's ndpi source package, so that a machine which reaches only
# Debian's archive and the Go proxy (CI) gets them.
#   scripts/public-captures.sh [DIR]          fetch unless present (default .cache/captures)
#   scripts/public-captures.sh --check [DIR]  exit 1, fetching nothing, unless present
#
# Nothing of the host's apt configuration changes: apt runs with a private
# one in DIR/apt whose deb-src sources are derived, at each run, from the
# host's deb822 sources (the mirror the machine already uses). Idempotent:
# when every capture is in DIR with its checksum, nothing is fetched.
set -eu

cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = --check ]; then
	check=1
	shift
fi
dir=${1:-.cache/captures}

orig=ndpi_4.2.orig.tar.gz
orig_sha256=e54ce8fe13adc5d747be7553513657fae78f796e0bd459e122c280cc06ce4daf
member=nDPI-4.2/tests/pcap
# name and sha256 of each capture, as in the tarball
captures="
ftp.pcap fb1d2762b3c297fd5f36932dd5ac9d0807c07f4727f3732ad75b9e0f96fd9813
ftp_failed.pcap d6af46afd052d576f42428f4a63aeced7a9637f10dd0acaa648a937a6b39b989
ftp-start-tls.pcap 68d9fde4dac86f9959317928777bf3b3d5d8594b6265f4539fdbf2250511b50f
fuzz-2006-06-26-2594.pcap 5970f755617b3e0a5ec77cb6babadcdae55f5a54e8107dba9681c03a43bbc597
"

log() { echo "public-captures: $*" >&2; }

names() { echo "$captures" | awk 'NF { print $1 }'; }

# verified succeeds when every capture is in directory $1, intact
verified() {
	echo "$captures" | awk -v d="$1" 'NF { print $2 "  " d "/" $1 }' | sha256sum --check --status 2>/dev/null
}

if verified "$dir"; then
	exit 0
fi
if [ "$check" = 1 ]; then
	log "not in $dir, or altered: scripts/public-captures.sh fetches them"
	exit 1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd) # apt reads a relative path as under /etc/apt

apt=$dir/apt
mkdir -p "$apt/sources.d" "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/prefs.d" "$apt/src"
: >"$apt/status"
: >"$apt/sources.list" # apt warns about /dev/null: not a regular file

# deb-src twins of the host's deb822 sources: same mirrors, suites, keys
rm -f "$apt/sources.d"/*.sources
for f in /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] || continue
	sed 's/^Types:.*/Types: deb-src/' "$f" >"$apt/sources.d/$(basename "$f")"
done
if ! ls "$apt/sources.d"/*.sources >/dev/null 2>&1; then
	log "no deb822 sources in /etc/apt/sources.list.d to derive deb-src from: fetch $orig from a Debian mirror's pool/main/n/ndpi/ and run this again with it in $apt/src"
	exit 1
fi

apt_get() {
	apt-get -q \
		-o "Dir::Etc::SourceList=$apt/sources.list" \
		-o "Dir::Etc::SourceParts=$apt/sources.d" \
		-o "Dir::Etc::Preferences=$apt/preferences" \
		-o "Dir::Etc::PreferencesParts=$apt/prefs.d" \
		-o "Dir::State::Lists=$apt/lists" \
		-o "Dir::State::status=$apt/status" \
		-o "Dir::Cache=$apt/cache" \
		-o Acquire::Languages=none \
		-o APT::Sandbox::User=root \
		"$@"
}

tarball=$apt/src/$orig
if ! echo "$orig_sha256  $tarball" | sha256sum --check --status 2>/dev/null; then
	log "fetching Debian's ndpi source ($orig, 127 MB) with a private apt configuration in $apt"
	# a mirror without deb-src for some suite fails the update; what counts
	# is the tarball's checksum below
	apt_get -qq update >&2 || log "apt-get update reported errors (carrying on)"
	# the Debian part may be missing on a mirror: only the orig tarball counts
	(cd "$apt/src" && apt_get -qq source --download-only ndpi >&2) || log "apt-get source reported errors (carrying on)"
	if ! echo "$orig_sha256  $tarball" | sha256sum --check --status 2>/dev/null; then
		log "no $orig with sha256 $orig_sha256 from the host's mirrors: unreachable, or ndpi 4.2's source is in none of their suites (bookworm and trixie have it)"
		exit 1
	fi
fi

tmp=$apt/extract
rm -rf "$tmp"
mkdir -p "$tmp"
# shellcheck disable=SC2046 # one tar argument per capture
tar -xzf "$tarball" -C "$tmp" $(names | sed "s|^|$member/|")
if ! verified "$tmp/$member"; then
	log "captures in $orig differ from the recorded checksums:"
	(cd "$tmp/$member" && sha256sum $(names)) >&2
	exit 1
fi
for name in $(names); do
	mv "$tmp/$member/$name" "$dir/$name"
done
cat >"$dir/SOURCE" <<EOF
$(names | tr '\n' ' ')
from $member/ in Debian's ndpi source package ($orig, sha256 $orig_sha256).
Licence: LGPL-3.0-or-later (nDPI; Debian's debian/copyright). Not part of ftpgate: fetched by
scripts/public-captures.sh, never committed.
EOF
# the captures are all that is kept
rm -rf "$apt"
log "$(names | wc -l) captures in $dir"
