package rawshard_test

import (
	"testing"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/rawshard"
	"github.com/gopresence/presence/internal/wire"
)

func newShard(name string, flush time.Duration) *rawshard.Shard {
	cfg := rawshard.DefaultConfig()
	cfg.FlushInterval = flush
	return rawshard.New(crdt.Replica{Name: name, Vsn: 1}, cfg)
}

func hb(name string) *wire.Heartbeat {
	return &wire.Heartbeat{From: crdt.Replica{Name: name, Vsn: 1}}
}

// deltas counts the heartbeats with a delta among msgs.
func deltas(msgs []wire.Outbound) int {
	n := 0
	for _, o := range msgs {
		if h, ok := o.Msg.(*wire.Heartbeat); ok && h.Delta != nil {
			n++
		}
	}
	return n
}

// A command arms the flush deadline FlushInterval after its time, once
// per interval; Advance sends the delta when the deadline has come, not
// before, and disarms it.
func TestFlushDeadline(t *testing.T) {
	s := newShard("a", 5*time.Millisecond)
	if _, ok := s.NextDeadline(); ok {
		t.Fatal("a deadline before any change")
	}
	s.Track(10*time.Millisecond, "o1", "t", "k1", []byte(`{}`))
	if r := s.Ready(); !r.NewDeadline {
		t.Fatal("the first change did not report a new deadline")
	}
	s.Track(12*time.Millisecond, "o2", "t", "k2", []byte(`{}`))
	if r := s.Ready(); r.NewDeadline {
		t.Fatal("a change within the interval moved the deadline")
	}
	if at, ok := s.NextDeadline(); !ok || at != 15*time.Millisecond {
		t.Fatalf("deadline %v %v, want 15ms", at, ok)
	}
	s.Advance(14 * time.Millisecond)
	if r := s.Ready(); len(r.Outbound) != 0 {
		t.Fatalf("sent before the deadline: %+v", r.Outbound)
	}
	s.Advance(15 * time.Millisecond)
	r := s.Ready()
	if len(r.Outbound) != 1 || r.Outbound[0].To != "" || deltas(r.Outbound) != 1 {
		t.Fatalf("at the deadline: %+v", r.Outbound)
	}
	if h := r.Outbound[0].Msg.(*wire.Heartbeat); len(h.Delta.Values) != 2 {
		t.Fatalf("delta of %d elements, want both tracks", len(h.Delta.Values))
	}
	if _, ok := s.NextDeadline(); ok || s.State().HasDelta() {
		t.Fatal("deadline or delta left after the flush")
	}
}

// A deadline armed before a heartbeat sent the delta stays: a change made
// after the heartbeat goes out at it, within FlushInterval.
func TestFlushDeadlineOutlivesHeartbeat(t *testing.T) {
	s := newShard("a", 5*time.Millisecond)
	s.Track(0, "o1", "t", "k1", []byte(`{}`))
	s.Tick(time.Millisecond) // sends the delta
	s.Track(2*time.Millisecond, "o2", "t", "k2", []byte(`{}`))
	s.Ready()
	if at, ok := s.NextDeadline(); !ok || at != 5*time.Millisecond {
		t.Fatalf("deadline %v %v, want 5ms", at, ok)
	}
	s.Advance(5 * time.Millisecond)
	if r := s.Ready(); deltas(r.Outbound) != 1 {
		t.Fatalf("at the deadline: %+v", r.Outbound)
	}
}

// Without a flush interval a change waits for the tick, as in Phoenix.
func TestNoFlushInterval(t *testing.T) {
	for _, d := range []time.Duration{0, -1} {
		s := newShard("a", d)
		s.Track(0, "o", "t", "k", []byte(`{}`))
		if r := s.Ready(); r.NewDeadline {
			t.Fatalf("FlushInterval %v: new deadline", d)
		}
		if _, ok := s.NextDeadline(); ok {
			t.Fatalf("FlushInterval %v: a deadline", d)
		}
	}
}

// A merge that removes elements re-gossips the removals in our delta,
// and arms the flush deadline as a command does.
func TestMergeArmsFlush(t *testing.T) {
	a, b := newShard("a", 5*time.Millisecond), newShard("b", 5*time.Millisecond)
	a.Step(0, hb("b"))
	b.Step(0, hb("a"))
	b.Track(0, "b:p", "t", "k", []byte(`{}`))
	a.Step(0, b.Heartbeat())
	b.Untrack(0, "b:p", "t", "k")
	a.Ready()
	a.Step(20*time.Millisecond, b.Heartbeat())
	if !a.State().HasDelta() {
		t.Fatal("the merge of a removal left no delta")
	}
	if r := a.Ready(); !r.NewDeadline {
		t.Fatal("a merge that left a delta did not arm the deadline")
	}
	if at, ok := a.NextDeadline(); !ok || at != 25*time.Millisecond {
		t.Fatalf("deadline %v %v, want 25ms", at, ok)
	}
}

// NextDeadline is the earlier of the flush and a stopping peer's grace
// end; Advance at the grace end lets the peer's presences leave.
func TestGraceDeadline(t *testing.T) {
	a, b := newShard("a", 5*time.Millisecond), newShard("b", 5*time.Millisecond)
	a.Step(0, hb("b"))
	b.Step(0, hb("a"))
	b.Track(0, "b:p", "t", "k", []byte(`{}`))
	a.Step(0, b.Heartbeat())
	a.Step(time.Second, &wire.Stopping{From: b.Self(), Grace: 2 * time.Second})
	if r := a.Ready(); !r.NewDeadline {
		t.Fatal("a grace that began did not report a new deadline")
	}
	a.Track(2900*time.Millisecond, "a:p", "t", "k2", []byte(`{}`))
	if at, ok := a.NextDeadline(); !ok || at != 2905*time.Millisecond {
		t.Fatalf("deadline %v %v, want the flush at 2.905s", at, ok)
	}
	a.Advance(2905 * time.Millisecond)
	a.Ready()
	if at, ok := a.NextDeadline(); !ok || at != 3*time.Second {
		t.Fatalf("deadline %v %v, want the grace end at 3s", at, ok)
	}
	a.Advance(2999 * time.Millisecond)
	if r := a.Ready(); len(r.Diffs) != 0 {
		t.Fatalf("left before the grace ended: %+v", r.Diffs)
	}
	a.Advance(3 * time.Second)
	if r := a.Ready(); len(r.Diffs) != 1 || len(r.Diffs[0].Leaves) != 1 {
		t.Fatalf("at the grace end: %+v", r.Diffs)
	}
	if _, ok := a.NextDeadline(); ok {
		t.Fatal("a deadline after the grace ended")
	}
}

// The defaults are Phoenix's (with the lowered idle heartbeat), plus the
// 5 ms flush; a negative flush interval stays off.
func TestDefaults(t *testing.T) {
	d := rawshard.DefaultConfig()
	if d.BroadcastPeriod != 1500*time.Millisecond || d.DownPeriod != 30*time.Second || d.MaxSilentPeriods != 9 ||
		d.PermdownPeriod != 20*time.Minute || d.ClockSamplePeriods != 2 || d.FlushInterval != 5*time.Millisecond ||
		len(d.MaxDeltaSizes) != len(crdt.DefaultDeltaSizes) {
		t.Fatalf("%+v", d)
	}
	if c := (rawshard.Config{FlushInterval: -1}).WithDefaults(); c.FlushInterval != -1 {
		t.Fatalf("negative flush interval became %v", c.FlushInterval)
	}
}
