#!/usr/bin/env bash
# fetch-kernel.sh VERSION — download a Debian kernel and cache what the VM
# harness needs from it:
#
#   .cache/vm/kernels/<VERSION>/vmlinux       ELF kernel with a PVH note (booted directly)
#   .cache/vm/kernels/<VERSION>/modules/*.ko  requested modules + dependencies, uncompressed
#   .cache/vm/kernels/<VERSION>/package.txt   "<package> <version> <suite> [<modules package>]"
#   .cache/vm/kernels/<VERSION>/modules.txt   module list the directory was built for
#
# VERSION is one of 5.10, 6.1, 6.12, 7.x. The newest matching package of the
# suite that ships that kernel line is picked.
#
# The host's apt sources are never touched: apt runs with a private
# configuration whose sources, lists and caches live under .cache/vm/apt.
# The downloaded .deb is kept under .cache/vm/debs, so a changed module list
# is rebuilt offline.
#
# Environment:
#   VMTEST_MODULES   space-separated module names (default: veth sch_ingress cls_bpf act_bpf tun
#                    crc32c_generic libcrc32c nf_conntrack nf_nat nfnetlink nf_conntrack_netlink: conntrack,
#                    its kfuncs and ctnetlink for the NAT object and its tests, #12;
#                    crc32c_generic provides the crc32c libcrc32c needs)
#   VMTEST_REFRESH=1 re-resolve the newest package even if a kernel is cached
#   VMTEST_BIN       path to a built vmtest helper (built on demand otherwise)
set -euo pipefail

usage() { echo "usage: $0 {5.10|6.1|6.12|7.x}" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
version=$1

# kv matches the kernel ABI part of the package names. Debian ships a
# kernel either as one linux-image-<abi>-amd64-unsigned package (up to
# 6.12) or split into linux-binary-<abi>-amd64 (image) plus
# linux-modules-<abi>-amd64 (modules), as the 7.x backports do; both are
# accepted so a packaging change inside a suite does not break the fetch.
case "$version" in
  5.10) suite=bullseye;         kv='5\.10\.0-[0-9]+' ;;
  6.1)  suite=bookworm;         kv='6\.1\.0-[0-9]+' ;;
  6.12) suite=trixie;           kv='6\.12\.[0-9]+\+deb13' ;;
  7.x)  suite=trixie-backports; kv='7\.[0-9]+\.[0-9]+\+deb13' ;;
  *) usage ;;
esac
pattern="^linux-(image-${kv}-amd64-unsigned|binary-${kv}-amd64)\$"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=$repo/.cache/vm
kdir=$cache/kernels/$version
modules=${VMTEST_MODULES:-veth sch_ingress cls_bpf act_bpf tun crc32c_generic libcrc32c nf_conntrack nf_nat nfnetlink nf_conntrack_netlink}
# Normalised so that "a b" and "b  a" count as the same request.
modules_norm=$(tr ' ' '\n' <<<"$modules" | sed '/^$/d' | sort -u | tr '\n' ' ')

log() { echo "fetch-kernel[$version]: $*" >&2; }

if [[ ${VMTEST_REFRESH:-0} != 1 && -s $kdir/vmlinux && -s $kdir/package.txt &&
      "$(cat "$kdir/modules.txt" 2>/dev/null)" == "$modules_norm" ]]; then
  log "cached: $(cat "$kdir/package.txt")"
  exit 0
fi

need_tool() { # need_tool COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing $2 (for $1)"
  apt-get install -y -qq "$2" >/dev/null
}
need_tool xz xz-utils
need_tool zstd zstd
need_tool dpkg-deb dpkg

vmtest=${VMTEST_BIN:-}
if [[ -z $vmtest ]]; then
  vmtest=$repo/out/vm/bin/vmtest
  (cd "$repo" && CGO_ENABLED=0 go build -o "$vmtest" ./tests/vm/cmd/vmtest)
fi

# --- private apt ---------------------------------------------------------
aptdir=$cache/apt
mkdir -p "$aptdir"/{lists/partial,cache/archives/partial,parts,prefs.d} "$cache/debs"
: >"$aptdir/status"

# Use the mirror the host already uses for bookworm, so we reach whatever
# the machine is allowed to reach.
mirror=$(
  { grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
      awk '$0 ~ /[[:space:]]bookworm[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }'
    awk 'tolower($1) == "uris:" { uri = $2 } tolower($1) == "suites:" && / bookworm( |$)/ && uri != "" { print uri; exit }' \
      /etc/apt/sources.list.d/*.sources 2>/dev/null
  } | head -n1
)
mirror=${mirror:-${VMTEST_MIRROR:-}}
if [[ -z $mirror ]]; then
  echo "fetch-kernel: no bookworm mirror in /etc/apt/sources.list*; set VMTEST_MIRROR to a Debian mirror URI" >&2
  exit 1
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -r $keyring ]] || need_tool /usr/share/keyrings/debian-archive-keyring.gpg debian-archive-keyring

{
  for s in bullseye bookworm bookworm-backports trixie trixie-backports; do
    # target=Packages: the host's apt.conf.d may add Contents or DEP-11
    # targets (apt-file, appstream); a kernel pick needs none of them, and
    # each extra file is one more chance to catch a mirror mid-sync.
    echo "deb [arch=amd64 target=Packages signed-by=$keyring] $mirror $s main"
  done
} >"$aptdir/sources.list.new"
if ! cmp -s "$aptdir/sources.list.new" "$aptdir/sources.list"; then
  mv "$aptdir/sources.list.new" "$aptdir/sources.list"
  rm -f "$aptdir/updated"   # sources changed: lists are stale
else
  rm -f "$aptdir/sources.list.new"
fi

apt_opts=(
  -o "Dir::Etc::sourcelist=$aptdir/sources.list"
  -o "Dir::Etc::SourceParts=$aptdir/parts"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=$aptdir/prefs.d"
  -o "Dir::State::Lists=$aptdir/lists"
  -o "Dir::State::status=$aptdir/status"
  -o "Dir::Cache=$aptdir/cache"
  -o "Dir::Cache::archives=$aptdir/cache/archives"
  -o "Dir::Cache::pkgcache=$aptdir/cache/pkgcache.bin"
  -o "Dir::Cache::srcpkgcache=$aptdir/cache/srcpkgcache.bin"
  -o "APT::Architecture=amd64"
  -o "APT::Architectures::=amd64"
  -o "Acquire::Languages=none"
  # The cache belongs to root, and _apt could not write into it anyway.
  -o "APT::Sandbox::User=root"
)
apt_update() {
  log "updating private package lists ($mirror)"
  local try
  for try in 1 2 3; do
    if apt-get "${apt_opts[@]}" -qq update >&2; then
      touch "$aptdir/updated"
      return 0
    fi
    # "File has unexpected size ... Mirror sync in progress?" passes in minutes.
    [[ $try == 3 ]] || { log "update failed (try $try of 3); retrying in $((try * 20))s"; sleep $((try * 20)); }
  done
  if [[ -e $aptdir/updated ]]; then
    # Offline with lists from an earlier run: good enough to pick from.
    log "warning: update failed; using the lists from $(date -r "$aptdir/updated")"
  else
    return 1
  fi
}

# Lists are refreshed at most daily, so repeated runs stay offline.
if [[ ! -e $aptdir/updated || -n $(find "$aptdir/updated" -mmin +1440) || ${VMTEST_REFRESH:-0} == 1 ]]; then
  apt_update
fi

# newest_package prints "<package> <version>" of the newest package whose
# name matches $pattern in exactly $suite (madison's third column is
# "<mirror> <suite>/main amd64 Packages").
newest_package() {
  local names best_pkg="" best_ver="" pkg ver
  names=$( { apt-cache "${apt_opts[@]}" pkgnames linux-image-; apt-cache "${apt_opts[@]}" pkgnames linux-binary-; } |
    grep -E "$pattern" || true)
  [[ -n $names ]] || return 1
  while IFS='|' read -r pkg ver src; do
    pkg=$(xargs <<<"$pkg"); ver=$(xargs <<<"$ver")
    [[ $src == *" $suite/main "* ]] || continue
    if [[ -z $best_ver ]] || dpkg --compare-versions "$ver" gt "$best_ver"; then
      best_pkg=$pkg best_ver=$ver
    fi
  done < <(apt-cache "${apt_opts[@]}" madison $names)
  [[ -n $best_ver ]] || return 1
  echo "$best_pkg $best_ver"
}

if ! picked=$(newest_package); then
  # A kernel ABI bump can remove the package we knew about: retry on fresh lists.
  apt_update
  picked=$(newest_package) || { log "no package matching $pattern in $suite"; exit 1; }
fi
read -r pkg ver <<<"$picked"
log "picked $pkg $ver ($suite)"

debs=("$pkg")
if [[ $pkg == linux-binary-* ]]; then
  debs+=("linux-modules-${pkg#linux-binary-}")
fi
files=()
for p in "${debs[@]}"; do
  # apt-get download names files <package>_<version, ":" as %3a>_<arch>.deb.
  deb=$cache/debs/${p}_${ver//:/%3a}_amd64.deb
  if [[ ! -s $deb ]]; then
    log "downloading $p=$ver"
    (cd "$cache/debs" && apt-get "${apt_opts[@]}" -qq download "$p=$ver" >&2)
    [[ -s $deb ]] || { log "download did not produce $deb"; exit 1; }
  fi
  files+=("$deb")
done

# --- unpack and extract ------------------------------------------------------
work=$(mktemp -d "$cache/unpack.XXXXXX")
trap 'rm -rf "$work"' EXIT
for deb in "${files[@]}"; do
  log "unpacking $(basename "$deb")"
  dpkg-deb -x "$deb" "$work/root"
done

# The image is /boot/vmlinuz-<abi> in the classic packages and
# /usr/lib/modules/<abi>/vmlinuz in the split ones.
vmlinuz=$(find "$work/root/boot" "$work/root/usr/lib/modules" -maxdepth 2 \
  \( -name 'vmlinuz-*' -o -name vmlinuz \) -type f 2>/dev/null | head -n1 || true)
[[ -n $vmlinuz ]] || { log "no vmlinuz in ${files[*]}"; exit 1; }
# Bookworm and older ship /lib/modules, trixie /usr/lib/modules.
moddir=$(find "$work/root/lib/modules" "$work/root/usr/lib/modules" -mindepth 2 -maxdepth 2 \
  -name kernel -type d 2>/dev/null | head -n1 || true)
[[ -n $moddir ]] || { log "no modules directory in ${files[*]}"; exit 1; }
moddir=$(dirname "$moddir")

new=$kdir.new
rm -rf "$new"
mkdir -p "$new/modules"
"$vmtest" extract-vmlinux -o "$new/vmlinux" "$vmlinuz"
# shellcheck disable=SC2086 # word splitting of the module list is intended
"$vmtest" collect-modules -tree "$moddir" -o "$new/modules" $modules
echo "$pkg $ver $suite ${debs[*]:1}" >"$new/package.txt"
echo "$modules_norm" >"$new/modules.txt"
rm -rf "$kdir"
mv "$new" "$kdir"
log "cached in ${kdir#"$repo"/}: $(ls "$kdir/modules" | tr '\n' ' ')"
