package maps

import (
	"reflect"
	"testing"
	"time"
)

// TestConfigRoundTrip: every field of Config reaches the BPF struct and comes
// back, and every field of the BPF struct is written. The sample sets every
// field, so a field added on either side without its mapping line fails.
func TestConfigRoundTrip(t *testing.T) {
	c := Config{
		ExpectTimeout: 90 * time.Second, ClockOffset: -time.Hour, MaxExpectPerConn: MaxExpectPerConn,
		FwmarkValue: 0x100, FwmarkMask: 0xff00, Loose: true, DryRun: true, Accounting: true, AllowLowDataPorts: true,
		RPCheck: RPOff, ReplayPieces: true, NAT: NATOwn, RequireTLS: true, TLSRanges: true, TLSSeen: true,
		SYNGateHorizon: 430 * time.Second, SyncHold: true,
	}
	allSet(t, "Config sample", reflect.ValueOf(c))
	v := configToBPF(c)
	allSet(t, "configToBPF", reflect.ValueOf(v))
	if got := configFromBPF(v); got != c {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
	}
	if got := configFromBPF(configToBPF(Config{})); got != (Config{}) {
		t.Fatalf("zero config round trip: %+v", got)
	}
}

func allSet(t *testing.T, what string, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Name != "_" && v.Field(i).IsZero() {
			t.Errorf("%s: field %s is zero", what, f.Name)
		}
	}
}
