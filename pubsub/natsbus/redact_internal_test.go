package natsbus

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                    "nats://127.0.0.1:4222",
		"nats://s3cret@127.0.0.1:4222":             "nats://xxxxx@127.0.0.1:4222",
		"nats://bob:s3cret@a:1, nats://c:2":        "nats://bob:xxxxx@a:1, nats://c:2",
		"tls://bob:s3cret@a:1,nats://tok@b:2":      "tls://bob:xxxxx@a:1,nats://xxxxx@b:2",
		"127.0.0.1:4222":                           "127.0.0.1:4222",
		"s3cret@127.0.0.1:4222":                    "(a URL with credentials)",
		"nats://bob:s3cret@a:1,s3cret@127.0.0.1:1": "nats://bob:xxxxx@a:1,(a URL with credentials)",
	} {
		if got := redactURLs(in); got != want {
			t.Errorf("redactURLs(%q) = %q, want %q", in, got, want)
		}
	}
}

// A failed connection's error names the server, not its credentials.
func TestConnectErrorHidesCredentials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := New(ctx, Config{URL: "nats://bob:s3cret@127.0.0.1:1", NodeName: "n"})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error %v", err)
	}
}
