# ftpgate: an FTP application-layer gateway in eBPF/XDP.
# `make help` lists the targets.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/ftpgate/ftpgate/loader.Version=$(VERSION)
BIN       := bin/ftpgate
KERNELS   ?= 5.10 6.1 6.12 7.x
# a count, not a duration: Go 1.26's fuzz coordinator can report its own
# -fuzztime deadline as a failure on a loaded machine (golang/go#75804)
FUZZTIME  ?= 300000x
# packages whose tests run inside the VM matrix
VM_PKGS   := bpf loader tests/vmtest
# modules the guests load: the harness's own, plus conntrack and NAT for the
# NAT object (#12), ctnetlink for the tests that list conntrack entries, and
# nf_tables with what the NAT lab's ruleset uses (nat chains, dnat,
# masquerade, ct; counter objects and objref are modules up to 6.1): the
# guests have no modprobe, so nothing is loaded on demand; 8021q for the
# releaser's VLAN case (#15 --sync-hold, loader/release_test.go)
VM_MODULES ?= veth sch_ingress cls_bpf act_bpf tun nf_conntrack nf_nat nf_conntrack_netlink crc32c_generic? \
	nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_counter? nft_objref? 8021q?
# per VM: on 7.x every loader start verifies the NAT object before falling
# back, and a VM of the matrix took 18 minutes on a busy 2-core host
VM_TIMEOUT ?= 30m
# host files the guests get at the same paths, executables with their shared
# libraries: Debian's xdp-loader and xdp-filter with libxdp's dispatcher and
# xdp-filter's objects, for the libxdp interoperability tests (loader's
# TestXDPLoaderInterop, TestXDPFilterHolderNamed)
VM_HOST_FILES ?= /usr/sbin/xdp-loader /usr/sbin/xdp-filter /usr/lib/x86_64-linux-gnu/bpf/xdp-dispatcher.o \
	/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_*.o

export CGO_ENABLED := 0

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the static ftpgate binary into bin/
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ftpgate

.PHONY: generate
generate: ## Regenerate the BPF objects and Go bindings with clang-16 (headers from bpf/include)
	scripts/deps.sh generate
	cd bpf && $(GO) generate ./...

.PHONY: update-headers
update-headers: ## Refresh the vendored kernel and libbpf headers in bpf/include from Debian's packages
	scripts/update-headers.sh

.PHONY: check-generate
check-generate: generate ## Fail if the committed BPF objects differ from a fresh `make generate`
	git diff --exit-code -- bpf/ || { echo "bpf/: committed objects are stale: run make generate and commit" >&2; exit 1; }

.PHONY: check-tidy
check-tidy: ## Fail if go.mod/go.sum are not what `go mod tidy` makes
	$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy and commit" >&2; exit 1; }

.PHONY: deps
deps: ## Install the Debian packages the tests and the demo need (only what is missing)
	scripts/deps.sh test

.PHONY: test
test: deps ## Run unit, BPF and lab tests (root; installs what it needs)
	FTPGATE_REQUIRE_BPF=1 FTPGATE_INSTALL=1 $(GO) test -count=1 -timeout 20m ./...

.PHONY: test-nat-off
test-nat-off: ## Run the BPF tests and the parser's reference corpus on the NAT build with NAT off: it must behave as the plain one (root)
	FTPGATE_TEST_VARIANT=nat FTPGATE_REQUIRE_BPF=1 $(GO) test -count=1 ./bpf/ ./internal/reference/

.PHONY: grouplab
grouplab: deps ## Gateway-group lab (#15): three gateways behind L4 ECMP, with and without sync (root; minutes)
	FTPGATE_GROUPLAB=1 FTPGATE_REQUIRE_BPF=1 $(GO) test -count=1 -timeout 20m -v -run TestGroupLab ./tests/grouplab/

.PHONY: vmtest
vmtest: ## Run the BPF, loader and end-to-end tests in VMs on Debian kernels (KERNELS="5.10 6.1")
	scripts/deps.sh vm
	mkdir -p out/vm
	set -e; for p in $(VM_PKGS); do $(GO) test -c -o out/vm/$$(basename $$p).test ./$$p; done
	tests/vm/run.sh --kernels "$(KERNELS)" --modules "$(VM_MODULES)" --timeout $(VM_TIMEOUT) --host-files "$(VM_HOST_FILES)" --binaries "$(foreach p,$(VM_PKGS),out/vm/$(notdir $(p)).test)"

.PHONY: fuzz
fuzz: ## Differential fuzzing of the TC parser against the Go reference (FUZZTIME=300000x executions)
	FTPGATE_REQUIRE_BPF=1 $(GO) test -run '^$$' -fuzz FuzzParserMatchesReference -fuzztime $(FUZZTIME) -fuzzminimizetime 20x -timeout 0 ./internal/reference/

.PHONY: demo
demo: build ## Lab demo: namespaces, vsftpd, ftpgate, passive + active transfers, an unsolicited attempt
	scripts/deps.sh test
	tests/demo/demo.sh $(BIN)

.PHONY: bench
bench: ## Benchmarks (per-packet cost, scale, throughput, SYN flood, NAT); results in out/bench/ and docs/benchmarks.md
	scripts/deps.sh test
	FTPGATE_REQUIRE_BPF=1 $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 15m -count 1 ./bench/...

.PHONY: ci
ci: check-tidy test test-nat-off grouplab check-generate vmtest ## What CI runs
	@if [ -d internal/reference ]; then $(MAKE) fuzz; fi

.PHONY: clean
clean: ## Remove build output (keeps the download caches in .cache/)
	rm -rf bin out
