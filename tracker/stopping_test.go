package tracker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/rawshard"
	"github.com/gopresence/presence/internal/wire"
	"github.com/gopresence/presence/pubsub/membus"
	"github.com/gopresence/presence/tracker"
)

// A graceful stop, at the level of the raw shard: the stopping message makes a
// peer hold the replica as stopping and keep its presences visible for the
// grace; then they leave, as diffs, and the replica is forgotten.

// pair returns shard a that knows b's two presences in topic t, and b.
func pair(t *testing.T) (a, b *rawshard.Shard) {
	t.Helper()
	a, b = newShard("a"), newShard("b")
	a.Step(0, hb("b", 1, nil))
	b.Step(0, hb("a", 1, nil))
	b.Track(0, "b:p1", "t", "alice", []byte(`{}`))
	b.Track(0, "b:p2", "t", "bob", []byte(`{}`))
	a.Step(0, b.Heartbeat())
	a.Ready()
	b.Ready()
	if n := len(a.State().List("t")); n != 2 {
		t.Fatalf("a lists %d", n)
	}
	return a, b
}

// stopMsg is what b broadcasts when it stops with grace.
func stopMsg(t *testing.T, b *rawshard.Shard, grace time.Duration) *wire.Stopping {
	t.Helper()
	b.Ready() // what b sent before is the test's business
	b.Stopping(grace)
	out := b.Ready().Outbound
	if len(out) != 1 || out[0].To != "" {
		t.Fatalf("stopping: want one broadcast, got %+v", out)
	}
	m, ok := out[0].Msg.(*wire.Stopping)
	if !ok || m.From != b.Self() || m.Grace != grace {
		t.Fatalf("stopping: got %#v", out[0].Msg)
	}
	return m
}

func keys(es []*crdt.Element) string {
	var out []string
	for _, e := range es {
		out = append(out, e.Key+"@"+e.Tag.Replica.Name)
	}
	return strings.Join(out, ",")
}

func TestStoppingKeepsPresencesForGrace(t *testing.T) {
	a, b := pair(t)
	a.Step(10*time.Second, stopMsg(t, b, 5*time.Second))
	if r := a.Ready(); len(r.Diffs) != 0 {
		t.Fatalf("the stopping message made diffs: %+v", r.Diffs)
	}
	p := a.Peers()
	if len(p) != 1 || !p[0].Stopping || p[0].Down || p[0].GraceEnd != 15*time.Second {
		t.Fatalf("peers %+v", p)
	}
	if at, ok := a.NextDeadline(); !ok || at != 15*time.Second {
		t.Fatalf("next deadline %v %v", at, ok)
	}
	// visible until the grace ends, ticks included
	a.Tick(14*time.Second + 999*time.Millisecond)
	if r := a.Ready(); len(r.Diffs) != 0 || len(a.State().List("t")) != 2 {
		t.Fatalf("left before the grace ended: %+v", r.Diffs)
	}
	a.DetectDown(15 * time.Second)
	r := a.Ready()
	if len(r.Diffs) != 1 || keys(r.Diffs[0].Leaves) != "alice@b,bob@b" || len(r.Diffs[0].Joins) != 0 {
		t.Fatalf("at the grace's end, want one diff with both leaves: %+v", r.Diffs)
	}
	if len(a.State().List("t")) != 0 || len(a.Peers()) != 0 || knows(a, b.Self()) {
		t.Fatal("the stopped replica is not forgotten")
	}
	if _, ok := a.NextDeadline(); ok {
		t.Fatal("a deadline is left")
	}
}

// A stopping peer is silent on purpose: the down timer does not apply to
// it, even with a grace longer than the down period.
func TestStoppingNotTakenDownBySilence(t *testing.T) {
	a, b := pair(t)
	a.Step(0, stopMsg(t, b, time.Minute))
	a.DetectDown(45 * time.Second) // past the 30 s down period
	if r := a.Ready(); len(r.Diffs) != 0 || len(a.State().List("t")) != 2 || a.Peers()[0].Down {
		t.Fatalf("taken down in its grace: %+v", r.Diffs)
	}
	a.DetectDown(time.Minute)
	if r := a.Ready(); len(r.Diffs) != 1 || len(r.Diffs[0].Leaves) != 2 {
		t.Fatalf("%+v", r.Diffs)
	}
}

// A crash sends nothing: the peer goes through the down period as ever.
func TestCrashStillUsesDownPeriod(t *testing.T) {
	a, _ := pair(t)
	if _, ok := a.NextDeadline(); ok {
		t.Fatal("a deadline without a stopping peer")
	}
	a.DetectDown(29 * time.Second)
	if r := a.Ready(); len(r.Diffs) != 0 || a.Peers()[0].Stopping {
		t.Fatalf("%+v", r.Diffs)
	}
	a.DetectDown(31 * time.Second)
	p := a.Peers()
	if r := a.Ready(); len(r.Diffs) != 1 || len(r.Diffs[0].Leaves) != 2 || !p[0].Down || p[0].Stopping {
		t.Fatalf("after the down period: %+v, peers %+v", r.Diffs, p)
	}
}

// A client of the stopping node that reconnects to another node within the
// grace tracks a new meta there before the old one leaves: for a third
// node the key is present throughout, and the grace's end is a leave of
// the old meta only.
func TestReconnectElsewhereWithinGrace(t *testing.T) {
	a, b := pair(t)
	c := newShard("c")
	for _, x := range []*rawshard.Shard{a, b} {
		x.Step(0, hb("c", 1, nil))
		c.Step(0, hb(x.Self().Name, 1, nil))
	}
	c.Step(0, b.Heartbeat()) // empty: c learns b's presences by transfer
	c.Step(0, &wire.TransferAck{ID: 1, From: b.Self(), Extract: b.State().Extract(c.State().Clocks())})
	c.Ready()
	stop := stopMsg(t, b, 5*time.Second)
	a.Step(time.Second, stop)
	c.Step(time.Second, stop)
	// alice reconnects to c
	c.Track(0, "c:p1", "t", "alice", []byte(`{"again":true}`))
	a.Step(2*time.Second, c.Heartbeat())
	if r := a.Ready(); len(r.Diffs) != 1 || keys(r.Diffs[0].Joins) != "alice@c" || len(r.Diffs[0].Leaves) != 0 {
		t.Fatalf("the reconnect: %+v", r.Diffs)
	}
	a.DetectDown(6 * time.Second)
	r := a.Ready()
	if len(r.Diffs) != 1 || keys(r.Diffs[0].Leaves) != "alice@b,bob@b" {
		t.Fatalf("at the grace's end: %+v", r.Diffs)
	}
	if got := keys(a.State().Get("t", "alice")); got != "alice@c" {
		t.Fatalf("alice after the grace: %q", got)
	}
	if got := keys(a.State().List("t")); got != "alice@c" {
		t.Fatalf("a lists %q", got)
	}
}

// The node comes back under its name (a new incarnation) while its old
// replica is stopping: the old presences leave at once, as when a node
// restarts before its peers noticed it down, and the new one is up.
func TestRestartDuringGrace(t *testing.T) {
	a, b := pair(t)
	a.Step(0, stopMsg(t, b, 5*time.Second))
	a.Step(time.Second, hb("b", 2, crdt.Clock{{Name: "b", Vsn: 2}: 0}))
	r := a.Ready()
	if len(r.Diffs) != 1 || keys(r.Diffs[0].Leaves) != "alice@b,bob@b" {
		t.Fatalf("old incarnation's presences: %+v", r.Diffs)
	}
	p := a.Peers()
	if len(p) != 1 || p[0].Replica.Vsn != 2 || p[0].Stopping || p[0].Down {
		t.Fatalf("peers %+v", p)
	}
	if knows(a, b.Self()) {
		t.Fatal("old incarnation still known")
	}
	if _, ok := a.NextDeadline(); ok {
		t.Fatal("the old grace is still pending")
	}
	a.DetectDown(6 * time.Second) // the old grace's end does nothing
	if r := a.Ready(); len(r.Diffs) != 0 || len(a.Peers()) != 1 {
		t.Fatalf("%+v", r.Diffs)
	}
}

// A heartbeat sent before the stopping message may arrive after it: its
// delta is merged and the peer stays stopping. A repeated stopping message
// keeps the first deadline.
func TestStoppingOutlivesLateHeartbeat(t *testing.T) {
	a, b := pair(t)
	b.Track(0, "b:p3", "t", "carol", []byte(`{}`))
	late := b.Heartbeat()
	stop := stopMsg(t, b, 5*time.Second)
	a.Step(time.Second, stop)
	a.Step(2*time.Second, late)
	a.Step(3*time.Second, stop)
	if r := a.Ready(); len(r.Diffs) != 1 || keys(r.Diffs[0].Joins) != "carol@b" {
		t.Fatalf("late delta: %+v", r.Diffs)
	}
	if p := a.Peers(); !p[0].Stopping || p[0].GraceEnd != 6*time.Second {
		t.Fatalf("peers %+v", p)
	}
	a.DetectDown(6 * time.Second)
	if r := a.Ready(); len(r.Diffs) != 1 || len(r.Diffs[0].Leaves) != 3 {
		t.Fatalf("%+v", r.Diffs)
	}
}

// A stopping message that can do no good: grace 0 is a graceful_permdown;
// from a peer held as down (its presences left already) it forgets the
// peer silently; from an unknown replica, an old incarnation or ourselves
// it is ignored.
func TestStoppingEdgeCases(t *testing.T) {
	a, b := pair(t)
	a.Step(0, stopMsg(t, b, 0))
	if r := a.Ready(); len(r.Diffs) != 1 || len(r.Diffs[0].Leaves) != 2 || len(a.Peers()) != 0 {
		t.Fatalf("grace 0: %+v", r.Diffs)
	}

	a, b = pair(t)
	a.PeerDown("b", 1)
	a.Ready()
	a.Step(0, stopMsg(t, b, 5*time.Second))
	if r := a.Ready(); len(r.Diffs) != 0 || len(a.Peers()) != 0 || knows(a, b.Self()) {
		t.Fatalf("stopping of a down peer: %+v, peers %+v", r.Diffs, a.Peers())
	}

	a, _ = pair(t)
	for _, from := range []crdt.Replica{{Name: "b", Vsn: 0}, {Name: "z", Vsn: 1}, a.Self()} {
		a.Step(0, &wire.Stopping{From: from, Grace: time.Second})
	}
	if p := a.Peers(); len(p) != 1 || p[0].Stopping || len(a.Ready().Diffs) != 0 {
		t.Fatalf("peers %+v", p)
	}
}

// A stopping peer is no longer asked for transfers: it sends nothing more.
func TestStoppingPeerNotAskedForTransfer(t *testing.T) {
	a, b := pair(t)
	b.Track(0, "b:p3", "t", "carol", []byte(`{}`))
	b.Heartbeat() // lost on its way to a
	a.Step(0, hb("b", 1, b.State().Clocks()))
	a.Step(0, stopMsg(t, b, 5*time.Second))
	a.Ready()
	a.Sample()
	for _, o := range a.Ready().Outbound {
		if _, ok := o.Msg.(*wire.TransferReq); ok && o.To == "b" {
			t.Fatal("transfer_req to a stopping peer")
		}
	}
}

// shutdownCfg is fast() with a broadcast period long enough to tell the
// grace timer from the next tick.
func shutdownCfg(bus *membus.Bus) tracker.Config {
	return tracker.Config{Bus: bus, BroadcastPeriod: time.Second, DownPeriod: 10 * time.Second,
		PermdownPeriod: time.Minute, FlushInterval: 5 * time.Millisecond, ShutdownGrace: 1500 * time.Millisecond}
}

// startPair starts n1 and n2 with cfg and has n2 track two presences that
// n1 sees; n1's diffs so far are consumed.
func startPair(t *testing.T, cfg func(*membus.Bus) tracker.Config) (n1, n2 *node) {
	t.Helper()
	net := membus.NewNetwork()
	var ns []*node
	for _, name := range []string{"n1", "n2"} {
		bus, err := net.Join(name)
		if err != nil {
			t.Fatal(err)
		}
		l := &diffLog{}
		tr, err := tracker.New(cfg(bus), l.handle)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		ns = append(ns, &node{tr, l, bus})
	}
	t.Cleanup(func() { stopNodes(ns) })
	time.Sleep(3 * time.Second)
	for _, k := range []string{"alice", "bob"} {
		ns[1].tr.Track(context.Background(), "o-"+k, "room", k, []byte(`{}`))
	}
	time.Sleep(100 * time.Millisecond)
	synctest.Wait()
	ns[0].tr.Sync()
	if n := ns[0].tr.Count("room"); n != 2 {
		t.Fatalf("n1 counts %d", n)
	}
	ns[0].log.take()
	return ns[0], ns[1]
}

func leaves(ds []tracker.Diff) (n int, diffs int) {
	for _, d := range ds {
		if len(d.Leaves) > 0 {
			diffs++
		}
		n += len(d.Leaves)
		if len(d.Joins) > 0 {
			panic(fmt.Sprintf("unexpected joins %+v", d.Joins))
		}
	}
	return n, diffs
}

// Tracker.Shutdown sends the stopping message: the peer reports the node as
// stopping with the grace left, keeps its presences for exactly the grace
// (the shard's grace timer, not its next tick), then reports them as
// leaves in one diff and forgets the node.
func TestShutdownGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n1, n2 := startPair(t, shutdownCfg)
		if err := n2.tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		rs := n1.tr.Replicas()
		if len(rs) != 1 || rs[0].Status() != "stopping" || rs[0].GraceLeft != 1500*time.Millisecond {
			t.Fatalf("replicas %+v", rs)
		}
		time.Sleep(1499 * time.Millisecond)
		synctest.Wait()
		n1.tr.Sync()
		if n, _ := leaves(n1.log.take()); n != 0 || n1.tr.Count("room") != 2 {
			t.Fatalf("%d leaves before the grace's end", n)
		}
		if rs := n1.tr.Replicas(); rs[0].GraceLeft != time.Millisecond {
			t.Fatalf("replicas %+v", rs)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		n1.tr.Sync()
		if n, diffs := leaves(n1.log.take()); n != 2 || diffs != 1 || n1.tr.Count("room") != 0 {
			t.Fatalf("at the grace's end: %d leaves in %d diffs, count %d", n, diffs, n1.tr.Count("room"))
		}
		if rs := n1.tr.Replicas(); len(rs) != 0 {
			t.Fatalf("replicas %+v", rs)
		}
	})
}

// PermdownOnShutdown wins over the grace: the presences leave at once.
func TestShutdownPermdownOverridesGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n1, n2 := startPair(t, func(b *membus.Bus) tracker.Config {
			c := shutdownCfg(b)
			c.PermdownOnShutdown = true
			return c
		})
		n2.tr.Shutdown(context.Background())
		synctest.Wait()
		n1.tr.Sync()
		if n, diffs := leaves(n1.log.take()); n != 2 || diffs != 1 || len(n1.tr.Replicas()) != 0 {
			t.Fatalf("%d leaves in %d diffs, replicas %+v", n, diffs, n1.tr.Replicas())
		}
	})
}

// With a negative ShutdownGrace the peer is not told: it keeps the node up
// until the down period, as after a crash (Phoenix's default).
func TestShutdownWithoutGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n1, n2 := startPair(t, func(b *membus.Bus) tracker.Config {
			c := shutdownCfg(b)
			c.ShutdownGrace = -1
			return c
		})
		n2.tr.Shutdown(context.Background())
		time.Sleep(5 * time.Second)
		synctest.Wait()
		n1.tr.Sync()
		if rs := n1.tr.Replicas(); len(rs) != 1 || rs[0].Status() != "up" || n1.tr.Count("room") != 2 {
			t.Fatalf("replicas %+v, count %d", rs, n1.tr.Count("room"))
		}
		time.Sleep(7 * time.Second)
		synctest.Wait()
		n1.tr.Sync()
		if rs := n1.tr.Replicas(); len(rs) != 1 || rs[0].Status() != "down" || n1.tr.Count("room") != 0 {
			t.Fatalf("after the down period: replicas %+v, count %d", rs, n1.tr.Count("room"))
		}
	})
}

// knows reports whether s's state has a context entry for r (down or not).
func knows(s *rawshard.Shard, r crdt.Replica) bool {
	_, ok := s.State().Context()[r]
	return ok
}
