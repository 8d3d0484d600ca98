#!/bin/bash
# ftpgate demo: a client, a gateway and an FTP server in network namespaces.
# ftpgate guards both gateway interfaces; we transfer a file in passive and
# in active mode, try a connection nobody negotiated, and show what an
# operator sees. Everything is torn down at the end, even on failure.
#
#   tests/demo/demo.sh [path/to/ftpgate]      (root; `make demo` builds it)
set -euo pipefail

FTPGATE=${1:-bin/ftpgate}
FTPGATE=$(readlink -f "$FTPGATE")
ID=fgdemo$$
CLI=$ID-cli GW=$ID-gw SRV=$ID-srv
PIN=/sys/fs/bpf/$ID
WORK=$(mktemp -d /tmp/ftpgate-demo.XXXXXX)
CLIENT4=192.0.2.2 SERVER4=198.51.100.2
GATE_PID=
VSFTPD_PID=

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

cleanup() {
	set +e
	[ -n "$GATE_PID" ] && kill "$GATE_PID" 2>/dev/null && wait "$GATE_PID" 2>/dev/null
	"$FTPGATE" detach --pin-dir "$PIN" >/dev/null 2>&1
	[ -n "$VSFTPD_PID" ] && kill "$VSFTPD_PID" 2>/dev/null
	for ns in "$CLI" "$GW" "$SRV"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates network namespaces and loads BPF)" >&2; exit 1; }
[ -x "$FTPGATE" ] || { echo "demo: no ftpgate binary at $FTPGATE: run make demo" >&2; exit 1; }

bold "1. A lab: client ($CLIENT4) -- gateway -- FTP server ($SERVER4)"
for ns in "$CLI" "$GW" "$SRV"; do ip netns add "$ns"; done
ip link add gw-c netns "$GW" type veth peer name eth0 netns "$CLI"
ip link add gw-s netns "$GW" type veth peer name eth0 netns "$SRV"
in_ns "$CLI" ip addr add $CLIENT4/24 dev eth0
in_ns "$GW" ip addr add 192.0.2.1/24 dev gw-c
in_ns "$GW" ip addr add 198.51.100.1/24 dev gw-s
in_ns "$SRV" ip addr add $SERVER4/24 dev eth0
for ns in "$CLI" "$GW" "$SRV"; do in_ns "$ns" ip link set lo up; done
in_ns "$CLI" ip link set eth0 up
in_ns "$SRV" ip link set eth0 up
in_ns "$GW" ip link set gw-c up
in_ns "$GW" ip link set gw-s up
in_ns "$CLI" ip route add default via 192.0.2.1
in_ns "$SRV" ip route add default via 198.51.100.1
in_ns "$GW" sysctl -qw net.ipv4.ip_forward=1
say "namespaces $CLI, $GW, $SRV; the gateway forwards between gw-c and gw-s"

mkdir -p "$WORK/ftp" "$WORK/empty"
head -c 1048576 /dev/urandom >"$WORK/ftp/file.bin"
chmod 755 "$WORK" "$WORK/ftp"
SUM=$(sha256sum "$WORK/ftp/file.bin" | cut -d' ' -f1)
cat >"$WORK/vsftpd.conf" <<EOF
listen=YES
anonymous_enable=YES
anon_root=$WORK/ftp
no_anon_password=YES
local_enable=NO
write_enable=NO
pasv_enable=YES
pasv_min_port=30000
pasv_max_port=30100
port_enable=YES
seccomp_sandbox=NO
secure_chroot_dir=$WORK/empty
xferlog_enable=NO
EOF
chmod 600 "$WORK/vsftpd.conf"
# ip execs vsftpd, so $! is vsftpd itself
ip netns exec "$SRV" vsftpd "$WORK/vsftpd.conf" >"$WORK/vsftpd.log" 2>&1 </dev/null &
VSFTPD_PID=$!
for _ in $(seq 100); do
	in_ns "$CLI" bash -c "exec 3<>/dev/tcp/$SERVER4/21" 2>/dev/null && break
	sleep 0.1
done
say "vsftpd serves a 1 MiB file (sha256 ${SUM:0:16}...) on port 21"

bold "2. Start ftpgate on both gateway interfaces"
say "$ ftpgate run --netns $GW --iface gw-c --iface gw-s --allow-port 21"
"$FTPGATE" run --netns "$GW" --iface gw-c --iface gw-s --allow-port 21 --pin-dir "$PIN" \
	--ready-file "$WORK/ready" --log-level warn &
GATE_PID=$!
for _ in $(seq 300); do [ -e "$WORK/ready" ] && break; sleep 0.1; done
[ -e "$WORK/ready" ] || { echo "demo: ftpgate did not start" >&2; exit 1; }
"$FTPGATE" status --pin-dir "$PIN" | sed 's/^/   /'

fetch() { # fetch LABEL CURL-FLAGS...
	local label=$1; shift
	local got
	got=$(in_ns "$CLI" curl -sS --connect-timeout 5 --max-time 20 "$@" "ftp://$SERVER4/file.bin" | sha256sum | cut -d' ' -f1)
	if [ "$got" = "$SUM" ]; then say "$label: transfer OK, checksum matches"; else say "$label: FAILED"; exit 1; fi
}

bold "3. Passive mode (PASV -> 227): the client opens the data connection"
fetch "passive" --ftp-pasv --disable-epsv
bold "4. Active mode (PORT): the server opens the data connection back to the client"
fetch "active " --ftp-port - --disable-eprt

bold "5. An expectation, caught while it waits (a hand-driven PASV)"
# the client holds its control connection open until we have looked; the
# listing runs here, outside `ip netns exec`, which would hide the pins
in_ns "$CLI" bash -c "
	exec 3<>/dev/tcp/$SERVER4/21
	read -r -t 5 line <&3
	printf 'USER anonymous\r\n' >&3; read -r -t 5 line <&3
	printf 'PASV\r\n' >&3; read -r -t 5 line <&3
	echo \"   server said: \$line\" >$WORK/pasv
	for _ in \$(seq 100); do [ -e $WORK/looked ] && break; sleep 0.1; done
	printf 'QUIT\r\n' >&3
" &
CLIENT_PID=$!
for _ in $(seq 100); do [ -s "$WORK/pasv" ] && break; sleep 0.1; done
cat "$WORK/pasv"
"$FTPGATE" expectations --pin-dir "$PIN" | sed 's/^/   /'
echo
say "the same entry, as bpftool prints it (field names come from BTF):"
bpftool map dump pinned "$PIN/expectations" | sed 's/^/   /'
touch "$WORK/looked"
wait "$CLIENT_PID" || true

bold "6. A connection nobody negotiated: dropped at XDP, so it times out"
if in_ns "$CLI" timeout 3 bash -c "exec 3<>/dev/tcp/$SERVER4/31337" 2>/dev/null; then
	say "unexpected: the connection went through"; exit 1
else
	say "client -> $SERVER4:31337 timed out (dropped, not refused)"
fi

bold "7. The counters: every admission and every drop has a name"
"$FTPGATE" stats --pin-dir "$PIN" | sed 's/^/   /'

bold "8. Tear down"
kill "$GATE_PID"; wait "$GATE_PID" 2>/dev/null || true; GATE_PID=
say "ftpgate stopped; the dataplane stays attached until: ftpgate detach"
"$FTPGATE" detach --pin-dir "$PIN" 2>/dev/null
say "detached; namespaces and files are removed on exit"
