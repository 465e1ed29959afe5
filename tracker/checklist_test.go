package tracker_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/rawshard"
	"github.com/gopresence/presence/internal/sim"
	"github.com/gopresence/presence/internal/wire"
	"github.com/gopresence/presence/tracker"
)

// Scenarios of phoenix_pubsub's replica, shard and shard-replication suites,
// and the failure cases Phoenix.Tracker users have reported (restarts,
// netsplits, stale transfers, duplicate names), at the level of the raw
// shard and the simulator (deterministic, virtual time). Tracker-level
// tests (goroutines, bus) are in tracker_test.go.

func script(t *testing.T, s *sim.Sim, lines string) string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		f := strings.Fields(l)
		o, err := s.Script(f[0], f[1:])
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		out = append(out, o)
	}
	return out[len(out)-1]
}

func hb(name string, vsn int64, clocks crdt.Clock) *wire.Heartbeat {
	return &wire.Heartbeat{From: crdt.Replica{Name: name, Vsn: vsn}, Clocks: clocks}
}

func newShard(name string) *rawshard.Shard {
	cfg := rawshard.DefaultConfig()
	cfg.DownPeriod = 30 * time.Second
	cfg.PermdownPeriod = 20 * time.Minute
	return rawshard.New(crdt.Replica{Name: name, Vsn: 1}, cfg)
}

func TestReplicaDistinctVsns(t *testing.T) {
	a, b := newTracker(t, "n1"), newTracker(t, "n1b")
	if a.Vsn() == b.Vsn() {
		t.Fatal("two trackers share a vsn")
	}
}

func TestReplicaRefIsNameAndVsn(t *testing.T) {
	s := newShard("n1")
	if s.Self() != (crdt.Replica{Name: "n1", Vsn: 1}) {
		t.Fatalf("%v", s.Self())
	}
}

func TestReplicaFirstHeartbeatCreatesUpRecord(t *testing.T) {
	s := newShard("n1")
	s.Step(5*time.Second, hb("n2", 7, crdt.Clock{{Name: "n2", Vsn: 7}: 0}))
	p := s.Peers()
	if len(p) != 1 || p[0].Down || p[0].LastSeen != 5*time.Second || p[0].Replica.Vsn != 7 {
		t.Fatalf("%+v", p)
	}
}

func TestReplicaHeartbeatRefreshesAndSetsUp(t *testing.T) {
	s := newShard("n1")
	s.Step(0, hb("n2", 1, nil))
	s.PeerDown("n2", 1)
	s.Step(10*time.Second, hb("n2", 1, nil))
	p := s.Peers()
	if p[0].Down || p[0].LastSeen != 10*time.Second {
		t.Fatalf("%+v", p)
	}
}

func TestReplicaSilenceBeyondDownPeriod(t *testing.T) {
	s := newShard("n1")
	s.Step(0, hb("n2", 3, nil))
	s.DetectDown(31 * time.Second)
	if p := s.Peers(); !p[0].Down || p[0].Replica.Vsn != 3 {
		t.Fatalf("%+v", p)
	}
}

func TestReplicaSilenceBeyondPermdownPeriod(t *testing.T) {
	s := newShard("n1")
	s.Step(0, hb("n2", 3, nil))
	s.DetectDown(21 * time.Minute)
	if p := s.Peers(); len(p) != 0 {
		t.Fatalf("%+v", p)
	}
	if _, ok := s.State().Context()[crdt.Replica{Name: "n2", Vsn: 3}]; ok {
		t.Fatal("state still knows the permdowned replica")
	}
}

func TestReplicaRecentHeartbeatUnchanged(t *testing.T) {
	s := newShard("n1")
	s.Step(0, hb("n2", 3, nil))
	s.DetectDown(10 * time.Second)
	if p := s.Peers(); p[0].Down {
		t.Fatalf("%+v", p)
	}
}

func TestDownPeriodTooShort(t *testing.T) {
	_, err := tracker.New(tracker.Config{Bus: newBus(t, "x"), BroadcastPeriod: time.Second, DownPeriod: 1500 * time.Millisecond}, nil)
	if !errors.Is(err, tracker.ErrDownPeriod) || err.Error() != "down_period must be at least twice as large as the broadcast_period" {
		t.Fatalf("%v", err)
	}
}

func TestPermdownNotAfterDown(t *testing.T) {
	_, err := tracker.New(tracker.Config{Bus: newBus(t, "x"), DownPeriod: time.Minute, PermdownPeriod: time.Minute}, nil)
	if !errors.Is(err, tracker.ErrPermdownPeriod) || err.Error() != "permdown_period must be at least larger than the down_period" {
		t.Fatalf("%v", err)
	}
}

func TestShardHeartbeatsPeriodically(t *testing.T) {
	s := newShard("n1")
	beats := 0
	for i := range 23 {
		s.Tick(time.Duration(i) * 1500 * time.Millisecond)
		for _, o := range s.Ready().Outbound {
			if _, ok := o.Msg.(*wire.Heartbeat); ok && o.To == "" {
				beats++
			}
		}
	}
	// first tick, then every MaxSilentPeriods+1 ticks when idle
	if beats != 3 {
		t.Fatalf("%d heartbeats in 23 idle ticks, want 3", beats)
	}
}

func TestUnseenNodeUpThenTransfer(t *testing.T) {
	s := sim.New(sim.DefaultConfig(1))
	out := script(t, s, `
		add-nodes 1
		track n1 o1 room:1 alice
		run 1s
		add-nodes 1
		run 1s
		list n2 room:1`)
	if out != "room:1 alice o1 {} @n1.1" {
		t.Fatalf("n2 lists %q", out)
	}
	if got := script(t, s, "transfers"); got == "delta=0 full=0" {
		t.Fatal("no transfer")
	}
}

func TestTransferOnlyToDominatingPeer(t *testing.T) {
	a := newShard("a")
	ra, rb, rc := crdt.Replica{Name: "a", Vsn: 1}, crdt.Replica{Name: "b", Vsn: 1}, crdt.Replica{Name: "c", Vsn: 1}
	a.Step(0, hb("b", 1, crdt.Clock{ra: 0, rb: 2, rc: 1}))
	a.Step(0, hb("c", 1, crdt.Clock{ra: 0, rb: 1, rc: 1}))
	a.Ready()
	a.Sample()
	var to []string
	for _, o := range a.Ready().Outbound {
		if _, ok := o.Msg.(*wire.TransferReq); ok {
			to = append(to, o.To)
		}
	}
	if !slices.Equal(to, []string{"b"}) {
		t.Fatalf("transfer_req to %v, want [b]", to)
	}
}

func TestKilledPermdownedRestartedNoOldPids(t *testing.T) {
	s := sim.New(sim.DefaultConfig(2))
	out := script(t, s, `
		add-nodes 3
		run 1s
		track n3 o1 room:1 old
		run 500ms
		crash n3
		run 6s
		restart n3
		track n3 o2 room:1 new
		run 2s
		list n1 room:1`)
	if out != "room:1 new o2 {} @n3.2" {
		t.Fatalf("n1: %q", out)
	}
	if out := script(t, s, "list n2 room:1"); out != "room:1 new o2 {} @n3.2" {
		t.Fatalf("n2: %q", out)
	}
}

func TestNetsplitKillRestart(t *testing.T) {
	s := sim.New(sim.DefaultConfig(3))
	script(t, s, `
		add-nodes 2
		run 1s
		track n2 o1 room:1 bob
		run 500ms
		diffs n1
		partition n1 | n2
		run 3s`)
	if d := script(t, s, "diffs n1"); d != "diff 1\n  - room:1 bob o1 {} @n2.1" {
		t.Fatalf("down: %q", d)
	}
	script(t, s, "heal\nrun 1500ms")
	if d := script(t, s, "diffs n1"); d != "diff 1\n  + room:1 bob o1 {} @n2.1" {
		t.Fatalf("resume: %q", d)
	}
	if p := script(t, s, "peers n1"); p != "n2.1 up" {
		t.Fatalf("vsn changed on resume: %q", p)
	}
	script(t, s, "crash n2\nrun 3s")
	if d := script(t, s, "diffs n1"); d != "diff 1\n  - room:1 bob o1 {} @n2.1" {
		t.Fatalf("killed: %q", d)
	}
	script(t, s, "restart n2\ntrack n2 o2 room:1 bob2\nrun 1s")
	if l := script(t, s, "list n1 room:1"); l != "room:1 bob2 o2 {} @n2.2" {
		t.Fatalf("restarted: %q", l)
	}
	if p := script(t, s, "peers n1"); p != "n2.2 up" {
		t.Fatalf("peers: %q", p)
	}
	script(t, s, "diffs n1\ncrash n2\nrun 3s")
	if d := script(t, s, "diffs n1"); d != "diff 1\n  - room:1 bob2 o2 {} @n2.2" {
		t.Fatalf("killed again: %q", d)
	}
	script(t, s, "run 5s")
	if p := script(t, s, "peers n1"); p != "(none)" {
		t.Fatalf("after permdown: %q", p)
	}
}

func TestDirtyListUntilPermdown(t *testing.T) {
	s := sim.New(sim.DefaultConfig(4))
	script(t, s, `
		add-nodes 2
		run 1s
		track n2 o1 room:1 bob
		run 500ms
		crash n2
		run 3s`)
	n1 := s.Node("n1").Raw.State()
	if len(n1.List("room:1")) != 0 || n1.Size() != 1 {
		t.Fatalf("list %d, dirty %d", len(n1.List("room:1")), n1.Size())
	}
	script(t, s, "run 3s")
	if n1.Size() != 0 {
		t.Fatal("dirty list after permdown")
	}
}

func TestUntrackNeverTracked(t *testing.T) {
	s := newShard("n1")
	if e := s.Untrack(0, "o", "t", "k"); e != nil {
		t.Fatal("untracked something")
	}
	if r := s.Ready(); len(r.Diffs) != 0 {
		t.Fatal("diff for a no-op")
	}
}

func TestUntrackOneTopicKeepsOther(t *testing.T) {
	s := newShard("n1")
	s.Track(0, "o", "t1", "k", []byte(`{}`))
	s.Track(0, "o", "t2", "k", []byte(`{}`))
	s.Untrack(0, "o", "t1", "k")
	if len(s.State().List("t2")) != 1 || len(s.State().List("t1")) != 0 || s.State().Lookup("o", "t2", "k") == nil || s.State().Lookup("o", "t1", "k") != nil {
		t.Fatal("untrack of one topic")
	}
}

func TestUntrackAll(t *testing.T) {
	s := newShard("n1")
	for i := range 3 {
		s.Track(0, "o", fmt.Sprintf("t%d", i), "k", []byte(`{}`))
	}
	s.Ready()
	if es := s.UntrackOwner(0, "o"); len(es) != 3 {
		t.Fatalf("%d", len(es))
	}
	if r := s.Ready(); len(r.Diffs) != 1 || len(r.Diffs[0].Leaves) != 3 {
		t.Fatal("one diff with every leave")
	}
	for i := range 3 {
		if s.State().Lookup("o", fmt.Sprintf("t%d", i), "k") != nil {
			t.Fatal("owner still has elements")
		}
	}
}

func TestUpdateWithoutTrack(t *testing.T) {
	s := newShard("n1")
	if _, _, err := s.Update(0, "o", "t", "k", []byte(`{}`)); !errors.Is(err, tracker.ErrNotTracked) {
		t.Fatalf("%v", err)
	}
}

func TestDuplicateTrack(t *testing.T) {
	s := newShard("n1")
	if _, err := s.Track(0, "o", "t", "k", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Track(0, "o", "t", "k", []byte(`{}`)); !errors.Is(err, tracker.ErrAlreadyTracked) {
		t.Fatalf("%v", err)
	}
	if _, err := s.Track(0, "o", "t2", "k", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Track(0, "o", "t", "k2", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
}

func TestGracefulPermdownOfPeer(t *testing.T) {
	s := sim.New(sim.DefaultConfig(5))
	script(t, s, `
		add-nodes 2
		run 1s
		track n2 o1 room:1 bob
		run 500ms
		diffs n1
		shutdown n2
		run 50ms`)
	if d := script(t, s, "diffs n1"); d != "diff 1\n  - room:1 bob o1 {} @n2.1" {
		t.Fatalf("%q", d)
	}
	if p := script(t, s, "peers n1"); p != "(none)" {
		t.Fatalf("peers %q", p)
	}
}

// Rolling update: a replacement node joining while a dead node is in its
// permdown grace asks for one transfer, not one per sampling (Phoenix looped
// here until it stopped sending the clocks of down replicas).
func TestRollingUpdateNoTransferLoop(t *testing.T) {
	testNoTransferLoop(t)
}

func TestReplacementNodeOneTransfer(t *testing.T) { testNoTransferLoop(t) }

func testNoTransferLoop(t *testing.T) {
	s := sim.New(sim.DefaultConfig(6))
	script(t, s, `
		add-nodes 2
		run 1s
		track n1 o1 room:1 alice
		track n2 o2 room:1 bob
		run 500ms
		crash n2
		run 3s
		add-nodes 1
		run 1s
		transfers`)
	script(t, s, "run 1500ms") // still within n2's permdown grace
	if got := script(t, s, "transfers"); got != "delta=0 full=0" {
		t.Fatalf("transfers keep coming: %s", got)
	}
	if l := script(t, s, "list n3 room:1"); l != "room:1 alice o1 {} @n1.1" {
		t.Fatalf("n3: %q", l)
	}
	script(t, s, "run 5s")
	if p := script(t, s, "peers n1"); p != "n3.1 up" {
		t.Fatalf("dead peer not permdowned: %q", p)
	}
}

// A peer restarting many times leaves no residue (Phoenix keeps a down
// entry for every past incarnation, which in time breaks its list).
func TestRestartsLeaveNoResidue(t *testing.T) {
	s := newShard("n1")
	for v := int64(1); v <= 5000; v++ {
		r := crdt.Replica{Name: "n2", Vsn: v}
		s.Step(time.Duration(v)*time.Second, &wire.Heartbeat{From: r, Clocks: crdt.Clock{r: 1},
			Delta: deltaOf(r, 1)})
	}
	if len(s.Peers()) != 1 {
		t.Fatalf("%d peers", len(s.Peers()))
	}
	if n := len(s.State().Context()); n != 2 {
		t.Fatalf("%d replicas in the context", n)
	}
	if l := s.State().List("t"); len(l) != 1 || l[0].Tag.Replica.Vsn != 5000 {
		t.Fatalf("list %v", l)
	}
}

func deltaOf(r crdt.Replica, clock uint64) *crdt.Delta {
	src := crdt.New(r)
	for range clock {
		src.Join(fmt.Sprintf("%s/%d", r.Name, r.Vsn), "t", "k", []byte(`{}`))
	}
	return src.TakeDelta()
}

// Two nodes that each hold more than a generation's worth of
// presences meet and converge both ways.
func TestBigNodesMeet(t *testing.T) {
	s := sim.New(sim.DefaultConfig(7))
	script(t, s, `
		add-nodes 2
		partition n1 | n2
		track-many n1 300 room:1
		track-batches n2 3 100 room:2
		run 1s
		heal
		run 1s`)
	if a, b := script(t, s, "count n2 room:1"), script(t, s, "count n1 room:2"); a != "300" || b != "300" {
		t.Fatalf("n2 sees %s of room:1, n1 sees %s of room:2", a, b)
	}
}

// The ghost scenario: B misses A's delta 2, gets 3 and 4 (join then leave
// of u3), then a stale transfer from C (which saw 1–3 only). Phoenix forgets
// the removed dot and takes u3 back from C; we show no ghost at any step, and
// B's clock for A stays truthful.
func TestNoGhostFromStaleTransfer(t *testing.T) { testGhost(t) }
func TestGhostScenario(t *testing.T)            { testGhost(t) }

func testGhost(t *testing.T) {
	ra := crdt.Replica{Name: "a", Vsn: 1}
	a, b, c := newShard("a"), newShard("b"), newShard("c")
	for _, s := range []*rawshard.Shard{a, b, c} {
		for _, n := range []string{"a", "b", "c"} {
			s.Step(0, hb(n, 1, nil))
		}
		s.Ready()
	}
	deltas := []*crdt.Delta{}
	send := func() *wire.Heartbeat { h := a.Heartbeat(); a.Ready(); deltas = append(deltas, h.Delta); return h }
	a.Track(0, "a:p1", "t", "u1", []byte(`{}`))
	d1 := send()
	a.Track(0, "a:p2", "t", "u2", []byte(`{}`))
	d2 := send()
	a.Track(0, "a:p3", "t", "u3", []byte(`{}`))
	d3 := send()
	a.Untrack(0, "a:p3", "t", "u3")
	d4 := send()
	for _, h := range []*wire.Heartbeat{d1, d2, d3} {
		c.Step(0, h)
	}
	b.Step(0, d1) // b misses d2
	b.Step(0, d3)
	b.Step(0, d4)
	noGhost := func(when string) {
		for _, e := range b.State().List("t") {
			if e.Key == "u3" {
				t.Fatalf("%s: ghost u3 on b", when)
			}
		}
	}
	noGhost("after d4")
	req := b.RequestTransfer("c")
	b.Ready()
	c.Step(0, req)
	ack := c.Ready().Outbound[0].Msg
	b.Step(0, ack)
	noGhost("after c's stale transfer")
	if got := b.State().Clocks()[ra]; got != 4 {
		// c's transfer filled the gap (dot 2): b has seen all of a's 4 dots.
		t.Fatalf("b's clock for a = %d", got)
	}
	req = b.RequestTransfer("a")
	b.Ready()
	a.Step(0, req)
	b.Step(0, a.Ready().Outbound[0].Msg)
	noGhost("after a's transfer")
	if l := b.State().List("t"); len(l) != 2 {
		t.Fatalf("b lists %d", len(l))
	}
}

// Heal within the permdown period: the pre-split presences join again,
// then the corrections of the split; after it only the current ones.
func TestHealWithinAndAfterPermdown(t *testing.T) {
	s := sim.New(sim.DefaultConfig(8))
	script(t, s, `
		add-nodes 2
		run 1s
		track n2 o1 room:1 stays
		track n2 o2 room:1 leaves
		run 500ms
		partition n1 | n2
		run 3s
		diffs n1
		untrack n2 o2 room:1 leaves
		heal
		run 1s`)
	if l := script(t, s, "list n1 room:1"); l != "room:1 stays o1 {} @n2.1" {
		t.Fatalf("within: %q", l)
	}
	script(t, s, `
		partition n1 | n2
		run 7s
		track n2 o3 room:1 new
		untrack n2 o1 room:1 stays
		heal
		run 1s`)
	if l := script(t, s, "list n1 room:1"); l != "room:1 new o3 {} @n2.1" {
		t.Fatalf("after permdown: %q", l)
	}
}

// A graceful_permdown, or a third node's delta that removes an
// element, for a peer already held as down reports no second leave (Phoenix
// reports the leaves again).
func TestNoSecondLeaveForDownPeer(t *testing.T) {
	a, b, c := newShard("a"), newShard("b"), newShard("c")
	for _, s := range []*rawshard.Shard{a, b, c} {
		for _, n := range []string{"a", "b", "c"} {
			s.Step(0, hb(n, 1, nil))
		}
		s.Ready()
	}
	b.Track(0, "b:p1", "t", "k", []byte(`{}`))
	b.Track(0, "b:p2", "t", "k2", []byte(`{}`))
	h := b.Heartbeat()
	a.Step(0, h)
	c.Step(0, h)
	a.Ready()
	c.Ready()
	a.PeerDown("b", 1)
	if r := a.Ready(); len(r.Diffs) != 1 || len(r.Diffs[0].Leaves) != 2 {
		t.Fatalf("down: %+v", r.Diffs)
	}
	// c observes b's removal and re-gossips it
	b.Untrack(0, "b:p1", "t", "k")
	c.Step(0, b.Heartbeat())
	c.Ready()
	a.Step(0, c.Heartbeat())
	if r := a.Ready(); len(r.Diffs) != 0 {
		t.Fatalf("third node's removal reported %+v", r.Diffs[0])
	}
	a.Step(0, &wire.GracefulPermdown{From: crdt.Replica{Name: "b", Vsn: 1}})
	if r := a.Ready(); len(r.Diffs) != 0 {
		t.Fatalf("graceful_permdown reported %+v", r.Diffs[0])
	}
}

// A heartbeat carrying our own name is ignored (and membus refuses a second
// live node of a name: see TestDuplicateNodeNameRefused in tracker_test.go).
func TestOwnNameIgnored(t *testing.T) {
	s := newShard("n1")
	s.Track(0, "o", "t", "k", []byte(`{}`))
	s.Ready()
	s.Step(0, hb("n1", 99, crdt.Clock{{Name: "n1", Vsn: 99}: 5}))
	if len(s.Peers()) != 0 || len(s.State().List("t")) != 1 || len(s.Ready().Diffs) != 0 {
		t.Fatal("own name not ignored")
	}
}

// Reports are the change in what a node shows, where Phoenix reports what
// each step did: a heartbeat that brings a down replica up and, in the same
// delta, removes some of its elements reports nothing for them (Phoenix
// reports each as a join and a leave); the others join.
func TestUpAndRemoveInOneMergeSaysNothing(t *testing.T) {
	a, b := newShard("a"), newShard("b")
	a.Step(0, hb("b", 1, nil))
	b.Step(0, hb("a", 1, nil))
	b.Track(0, "b:p1", "t", "gone", []byte(`{}`))
	b.Track(0, "b:p2", "t", "stays", []byte(`{}`))
	a.Step(0, b.Heartbeat())
	a.PeerDown("b", 1)
	a.Ready()
	b.Ready()
	b.Untrack(0, "b:p1", "t", "gone")
	a.Step(time.Second, b.Heartbeat())
	r := a.Ready()
	if len(r.Diffs) != 1 || len(r.Diffs[0].Leaves) != 0 || len(r.Diffs[0].Joins) != 1 || r.Diffs[0].Joins[0].Key != "stays" {
		t.Fatalf("got %+v", r.Diffs)
	}
}

// Reports are the change in what a node shows: a merge that overwrites a
// stored element whose tag the payload does not cover reports the old
// element's leave with the new one's join (Phoenix reports only the join).
func TestOverwriteReportsLeave(t *testing.T) {
	a, b := newShard("a"), newShard("b")
	a.Step(0, hb("b", 1, nil))
	b.Track(0, "b:p1", "t", "k", []byte(`{"v":1}`))
	a.Step(0, b.Heartbeat())
	a.Ready()
	b.Update(0, "b:p1", "t", "k", []byte(`{"v":2}`))
	b.Heartbeat() // lost on its way to a
	b.Update(0, "b:p1", "t", "k", []byte(`{"v":3}`))
	a.Step(0, b.Heartbeat())
	r := a.Ready()
	if len(r.Diffs) != 1 || len(r.Diffs[0].Joins) != 1 || len(r.Diffs[0].Leaves) != 1 ||
		string(r.Diffs[0].Joins[0].Meta) != `{"v":3}` || string(r.Diffs[0].Leaves[0].Meta) != `{"v":1}` {
		t.Fatalf("got %+v", r.Diffs)
	}
	if l := a.State().List("t"); len(l) != 1 || string(l[0].Meta) != `{"v":3}` {
		t.Fatalf("list %v", l)
	}
}
