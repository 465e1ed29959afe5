package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFlagsFromEnvironment(t *testing.T) {
	o, err := parse([]string{"--broadcast-period", "2s"}, env(map[string]string{
		"PRESENCE_NODE": "n7", "PRESENCE_BROADCAST_PERIOD": "1s", "PRESENCE_PERMDOWN_ON_SHUTDOWN": "true",
		"PRESENCE_NATS_URL": "nats://127.0.0.1:4222",
	}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.node != "n7" || !o.permdownOnShutdown || o.natsURL != "nats://127.0.0.1:4222" {
		t.Fatalf("%+v", o)
	}
	if o.broadcastPeriod != 2*time.Second {
		t.Fatalf("a flag must override its environment variable: %v", o.broadcastPeriod)
	}
	if _, err := parse(nil, env(map[string]string{"PRESENCE_FLUSH_INTERVAL": "soon"}), &bytes.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), "PRESENCE_FLUSH_INTERVAL") {
		t.Fatalf("bad env value: %v", err)
	}
	if _, err := parse([]string{"--nats-url", "x", "--redis-url", "y"}, env(nil), &bytes.Buffer{}); err == nil {
		t.Fatal("two buses accepted")
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if _, err := parse([]string{"--help"}, env(nil), &out); err != errHelp {
		t.Fatalf("%v", err)
	}
	for _, f := range []string{"listen", "node", "nats-url", "nats-embed", "nats-listen", "nats-cluster-listen",
		"nats-routes", "redis-url", "broadcast-period", "down-period", "permdown-period", "flush-interval",
		"permdown-on-shutdown", "jwt-secret", "insecure", "origins", "PRESENCE_<FLAG>"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("--help does not mention %s", f)
		}
	}
}

// Dev mode (identity taken on trust from user_id) only on loopback.
func TestDevModeOnlyOnLoopback(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--listen", "0.0.0.0:0"}, env(nil), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("dev mode on 0.0.0.0: %v", err)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:4000": true, "localhost:1": true, "[::1]:4000": true,
		"0.0.0.0:4000": false, ":4000": false, "10.0.0.1:1": false} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v", addr, got)
		}
	}
}
