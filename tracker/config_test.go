package tracker

import (
	"testing"
	"time"
)

// An idle node must heartbeat at least twice per down period, or its peers
// take it for down and its presences flap.
func TestIdleHeartbeatsFitTheDownPeriod(t *testing.T) {
	c := Config{BroadcastPeriod: 100 * time.Millisecond, DownPeriod: time.Second}.withDefaults()
	if every := time.Duration(c.MaxSilentPeriods+1) * c.BroadcastPeriod; every > c.DownPeriod/2 {
		t.Fatalf("idle heartbeat every %v with a %v down period", every, c.DownPeriod)
	}
	d := Config{}.withDefaults()
	if d.DownPeriod != 30*time.Second || d.MaxSilentPeriods != 9 {
		t.Fatalf("defaults: down %v, max silent %d", d.DownPeriod, d.MaxSilentPeriods)
	}
	// a setting that already fits is kept
	k := Config{MaxSilentPeriods: 3, BroadcastPeriod: time.Second, DownPeriod: 10 * time.Second}.withDefaults()
	if k.MaxSilentPeriods != 3 {
		t.Fatalf("kept: %d", k.MaxSilentPeriods)
	}
}
