package pubsubtest

import (
	"context"
	"testing"
	"time"

	"github.com/gopresence/presence/pubsub"
)

// reconnectTimeout bounds RunReconnect: the adapters' reconnect backoff
// plus the server's restart.
const reconnectTimeout = 30 * time.Second

// RunReconnect checks that buses survive a restart of the server they
// share: newCluster builds two buses on the server, restart stops it and
// starts it again at the same address, and afterwards the subscription
// made before the restart receives a Broadcast and a DirectBroadcast
// again, without the buses being rebuilt. Messages sent while the buses
// reconnect may be lost (as any Bus may lose messages): each message is
// sent again every 20 ms until it arrives.
func RunReconnect(t *testing.T, newCluster NewCluster, restart func(t *testing.T)) {
	buses := cluster(t, newCluster, 2)
	from, to := buses[0], buses[1]
	got := make(chan pubsub.Message, 100)
	if _, err := to.Subscribe("t", func(m pubsub.Message) {
		select {
		case got <- m:
		default: // a burst of resends: the test reads the latest
		}
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), reconnectTimeout)
	defer cancel()
	send := func(want string, publish func() error) {
		t.Helper()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := publish(); err != nil {
				t.Logf("%s: %v", want, err)
			}
			select {
			case m := <-got:
				if string(m.Data) == want {
					return
				}
			case <-tick.C:
			case <-ctx.Done():
				t.Fatalf("%q never arrived", want)
			}
		}
	}
	broadcast := func(data string) func() error {
		return func() error { return from.Broadcast(ctx, "t", []byte(data)) }
	}
	direct := func(data string) func() error {
		return func() error { return from.DirectBroadcast(ctx, to.NodeName(), "t", []byte(data)) }
	}
	send("broadcast before", broadcast("broadcast before"))
	send("direct before", direct("direct before"))
	restart(t)
	send("broadcast after", broadcast("broadcast after"))
	send("direct after", direct("direct after"))
}
