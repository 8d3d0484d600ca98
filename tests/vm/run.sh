#!/usr/bin/env bash
# run.sh — boot a kernel matrix in qemu and run static Go test binaries in
# each VM. Thin wrapper: installs qemu if missing, builds the Go runner and
# hands all arguments to it.
#
#   tests/vm/run.sh --kernels "5.10 6.1 6.12 7.x" --binaries "out/vm/a.test out/vm/b.test"
#
# See tests/vm/README.md and `out/vm/bin/vmtest run -h` for all flags.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
  echo "run.sh: installing qemu-system-x86" >&2
  apt-get install -y -qq qemu-system-x86 >/dev/null
fi

CGO_ENABLED=0 go build -trimpath -o out/vm/bin/vmtest ./tests/vm/cmd/vmtest
exec out/vm/bin/vmtest run "$@"
