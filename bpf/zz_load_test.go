package bpf

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
)

func TestZZLoad(t *testing.T) {
	var objs FtpgateObjects
	err := LoadFtpgateObjects(&objs, &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelBranch}})
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		for _, l := range ve.Log { t.Log(l) }; t.FailNow()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	t.Log(objs.FtpgateTcIngress.VerifierLog)
	t.Log(objs.FtpgateXdp.VerifierLog)
}
