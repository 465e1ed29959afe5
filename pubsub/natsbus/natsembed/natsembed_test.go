package natsembed_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence/pubsub/natsbus/natsembed"
)

func TestStartClose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natsembed.Start(ctx, natsembed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") {
		t.Errorf("ClientURL = %q", s.ClientURL())
	}
	if s.ClusterURL() != "" {
		t.Errorf("ClusterURL of a standalone server = %q", s.ClusterURL())
	}
	s.Close()
	s.Close() // idempotent
}

func TestStartCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, err := natsembed.Start(ctx, natsembed.Config{})
	if err == nil {
		// It may have been ready at once; that is fine too.
		s.Close()
		return
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a canceled ctx: %v", err)
	}
}

func TestBadRoute(t *testing.T) {
	_, err := natsembed.Start(context.Background(), natsembed.Config{Cluster: &natsembed.Cluster{Routes: []string{"://bad"}}})
	if err == nil {
		t.Fatal("bad route URL accepted")
	}
}
