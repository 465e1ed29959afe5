package loadtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func refs(s ...string) []uint32 {
	var out []uint32
	for _, r := range s {
		out = append(out, refHash([]byte(r)))
	}
	return out
}

// The view follows phoenix.js's Presence: state replaces, diffs before the
// first state wait for it, joins add or replace by phx_ref, leaves remove
// by phx_ref, a key without metas is gone.
func TestRoomView(t *testing.T) {
	v := roomView{n: 4}
	check := func(key string, want ...string) {
		t.Helper()
		got := v.metas(key)
		slices.Sort(got)
		w := refs(want...)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Fatalf("%s: metas %v, want %v (%v)", key, got, w, want)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Diffs before the state are queued, then applied after it (in order).
	must(v.diff([]byte(`{"joins":{"u2":{"metas":[{"phx_ref":"C"}]}},"leaves":{}}`)))
	must(v.diff([]byte(`{"joins":{},"leaves":{"u0":{"metas":[{"phx_ref":"A0"}]}}}`)))
	if v.len() != 0 || v.synced || len(v.pending) != 2 {
		t.Fatalf("before the state: %d keys, synced %v, %d pending", v.len(), v.synced, len(v.pending))
	}
	must(v.state([]byte(` { "u0" : {"metas":[{"status":"online","n":0,"phx_ref":"A"},{"phx_ref":"A0"}]},
		"u1":{"metas":[{"x":{"phx_ref":"NOT","a":[1,"]",{"b":null}]},"phx_ref":"B","s":"q\"}"}],"user":{"name":"b"}}} `)))
	check("u0", "A") // A0 left in the queued diff
	check("u1", "B")
	check("u2", "C")
	if v.len() != 3 || v.complete() || len(v.pending) != 0 {
		t.Fatalf("after the state: %d keys, complete %v, %d pending", v.len(), v.complete(), len(v.pending))
	}

	// A join with a phx_ref already there replaces it; another adds a meta.
	must(v.diff([]byte(`{"joins":{"u1":{"metas":[{"phx_ref":"B","status":"away"}]}},"leaves":{}}`)))
	check("u1", "B")
	must(v.diff([]byte(`{"joins":{"u1":{"metas":[{"phx_ref":"B2"}]},"u3":{"metas":[{"phx_ref":"D"}]}},"leaves":{}}`)))
	check("u1", "B", "B2")
	if !v.complete() || v.len() != 4 {
		t.Fatalf("want complete with 4 keys: %d", v.len())
	}

	// An update: joins first, then leaves, whatever their order in the payload.
	must(v.diff([]byte(`{"leaves":{"u1":{"metas":[{"phx_ref":"B"}]}},"joins":{"u1":{"metas":[{"phx_ref":"B3","phx_ref_prev":"B"}]}}}`)))
	check("u1", "B2", "B3")
	// Leaving a ref the key lacks changes nothing; leaving every meta
	// removes the key.
	must(v.diff([]byte(`{"joins":{},"leaves":{"u0":{"metas":[{"phx_ref":"Z"}]},"u9":{"metas":[{"phx_ref":"A"}]}}}`)))
	check("u0", "A")
	must(v.diff([]byte(`{"joins":{},"leaves":{"u1":{"metas":[{"phx_ref":"B3"},{"phx_ref":"B2"}]}}}`)))
	check("u1")
	if v.complete() || v.len() != 3 || v.keys != 3 {
		t.Fatalf("after u1 left: complete %v, %d keys", v.complete(), v.len())
	}
	// The primary slot of a key refilled from its further metas.
	must(v.diff([]byte(`{"joins":{"u3":{"metas":[{"phx_ref":"D2"}]}},"leaves":{"u3":{"metas":[{"phx_ref":"D"}]}}}`)))
	check("u3", "D2")

	// Other keys (not u<i < n>) are kept too, but do not count.
	must(v.diff([]byte(`{"joins":{"alice":{"metas":[{"phx_ref":"E"}]},"u4":{"metas":[{"phx_ref":"F"}]},"u01":{"metas":[{"phx_ref":"G"}]}},"leaves":{}}`)))
	check("alice", "E")
	check("u4", "F")
	if v.len() != 6 || v.keys != 3 {
		t.Fatalf("other keys: %d keys, %d own", v.len(), v.keys)
	}
	must(v.diff([]byte(`{"joins":{},"leaves":{"alice":{"metas":[{"phx_ref":"E"}]}}}`)))
	check("alice")

	// A new state replaces everything.
	must(v.state([]byte(`{"u1":{"metas":[{"phx_ref":"H"}]}}`)))
	check("u0")
	check("u1", "H")
	check("u4")
	if v.len() != 1 {
		t.Fatalf("after the second state: %d keys", v.len())
	}
	must(v.state([]byte(`{}`)))
	if v.len() != 0 {
		t.Fatal("empty state")
	}

	for _, bad := range []string{``, `[]`, `{"u0":{"metas":[{"phx_ref":1}]}}`, `{"u0":{"metas":{}}}`,
		`{"u0":{"metas":[{"phx_ref":"A"}]}`, `{"u0":{"metas":[{"a":[}]}]}}`, `{"u0" {"metas":[]}}`} {
		w := roomView{n: 1, synced: true}
		if err := w.state([]byte(bad)); err == nil {
			t.Errorf("state %q: no error", bad)
		}
		if err := w.diff([]byte(`{"joins":` + bad + `}`)); err == nil {
			t.Errorf("diff of %q: no error", bad)
		}
	}
	if err := (&roomView{synced: true}).diff([]byte(`{"other":1}`)); err == nil {
		t.Error("diff without joins or leaves: no error")
	}
}

func TestParseCount(t *testing.T) {
	k, m, err := parseCount([]byte(` {"metas": 12, "keys":10, "x":[1]} `))
	if err != nil || k != 10 || m != 12 {
		t.Fatal(k, m, err)
	}
	for _, bad := range []string{`{"keys":1}`, `{"keys":"1","metas":1}`, `{"keys":-1,"metas":1}`, `[]`} {
		if _, _, err := parseCount([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// A room client's frames, as its reader gets them: the diffs that come
// before the join's reply and presence_state wait for the state, the view
// completes with the last key, and the frames are counted per second.
func TestRoomClientFrames(t *testing.T) {
	const s = int64(time.Second)
	start := time.Now().UnixNano()
	for _, mode := range []string{PresenceFull, PresenceCount} {
		w := &worker{job: Job{Mode: ModeRoom, Topic: "room:t", Total: 3, PresenceMode: mode}}
		w.start.Store(start)
		c := &client{idx: 1, room: &roomClient{view: roomView{n: 3}}}
		c.room.sent = start
		at := start
		feed := func(frame string) {
			at += s / 4
			w.handle(c, []byte(frame), at, at+1)
		}
		feed(`[null,null,"room:t","presence_diff",{"joins":{"u2":{"metas":[{"phx_ref":"c"}]}},"leaves":{}}]`)
		feed(`["1","1","room:t","phx_reply",{"status":"ok","response":{}}]`)
		feed(`["1",null,"room:t","presence_state",{"u0":{"metas":[{"phx_ref":"a"}]},"u1":{"metas":[{"phx_ref":"b"}]}}]`)
		feed(`[null,"h1","phoenix","phx_reply",{"status":"ok","response":{}}]`)
		feed(`[null,null,"room:t","presence_count",{"keys":2,"metas":2}]`)
		feed(`[null,null,"room:t","presence_count",{"keys":3,"metas":3}]`)
		feed(`not json`)
		r := c.room
		if !r.ok || r.replyAt != start+2*s/4 || len(c.joinLat) != 1 || c.joinLat[0] != 500000 {
			t.Fatalf("%s: reply ok %v at %d, latency %v", mode, r.ok, r.replyAt-start, c.joinLat)
		}
		want := start + 3*s/4 // the state completes the view
		if mode == PresenceCount {
			want = start + 6*s/4
		}
		if !r.complete || r.completeAt != want || r.completeReadAt != want+1 || w.roomComplete.Load() != 1 {
			t.Fatalf("%s: complete %v at %d, read %d, counter %d", mode, r.complete, r.completeAt-start, r.completeReadAt-start, w.roomComplete.Load())
		}
		if r.diffFrames != 1 || r.stateFrames != 1 || r.countFrames != 2 || r.parseErrs != 1 || r.diffBytes == 0 || r.stateBytes == 0 {
			t.Fatalf("%s: %+v", mode, r)
		}
		// diff at 0.25 s, counts at 1.25 and 1.5 s.
		if !slices.Equal(r.updates, secBuckets{1, 2}) {
			t.Fatalf("%s: per second %v", mode, r.updates)
		}
		if mode == PresenceFull {
			// A leave makes the view incomplete again.
			feed(`[null,null,"room:t","presence_diff",{"joins":{},"leaves":{"u0":{"metas":[{"phx_ref":"a"}]}}}]`)
			if r.complete || w.roomComplete.Load() != 0 {
				t.Fatal("still complete after a leave")
			}
		}
		w.clients = []*client{c, nil}
		res := w.roomResult()
		wantAt, wantKeys, wantDiffs := want, int64(3), int64(1)
		if mode == PresenceFull {
			wantAt, wantKeys, wantDiffs = 0, 2, 2
		}
		if res.OK != 1 || res.LastReply != r.replyAt || len(res.CompleteAt) != 1 || res.CompleteAt[0] != wantAt ||
			res.Keys[0] != wantKeys || res.DiffFrames[0] != wantDiffs || res.Updates.Max != 2 {
			t.Fatalf("%s: result %+v", mode, res)
		}
	}
}

func TestRoomPayload(t *testing.T) {
	w := &worker{job: Job{MetaPad: 3, PresenceMode: PresenceCount}}
	if got := string(w.roomPayload(7)); got != `{"meta":{"status":"online","n":7,"pad":"xxx"},"presence":{"mode":"count"}}` {
		t.Fatal(got)
	}
	w.job = Job{}
	if got := string(w.roomPayload(7)); got != `{"meta":{"status":"online","n":7}}` {
		t.Fatal(got)
	}
}

// The frames-per-second figure: per client, frames by 1-s bucket of
// their arrival after the start; the summary's maximum is over clients and
// buckets, its per-second totals over clients.
func TestRoomBuckets(t *testing.T) {
	const s = int64(time.Second)
	start := int64(1000 * s)
	var a, b, c secBuckets
	for _, at := range []int64{0, s - 1, s, 2*s + 5, 2*s + 6, 2*s + 7, -5 * s} {
		a.add(start+at, start)
	}
	// Before the start counts in second 0; beyond an hour in the last.
	if !slices.Equal(a, secBuckets{3, 1, 3}) {
		t.Fatalf("a = %v", a)
	}
	for _, at := range []int64{5 * s, 5*s + 1, 5*s + 2, 4 * s} {
		b.add(start+at, start)
	}
	c.add(start+100*3600*s, start)
	if len(c) != maxBuckets || c[maxBuckets-1] != 1 {
		t.Fatalf("c: %d buckets", len(c))
	}
	var w1, w2, all BucketSummary
	w1.add(a)
	if w1.Max != 3 || w1.MaxAt != 0 || !slices.Equal(w1.PerSecond, []int64{3, 1, 3}) {
		t.Fatalf("w1 %+v", w1)
	}
	w1.add(b)
	if w1.Max != 3 || w1.MaxAt != 0 || !slices.Equal(w1.PerSecond, []int64{3, 1, 3, 0, 1, 3}) {
		t.Fatalf("w1 %+v", w1)
	}
	var d secBuckets
	for range 4 {
		d.add(start+3*s+1, start)
	}
	w2.add(d)
	all.merge(w1)
	all.merge(w2)
	if all.Max != 4 || all.MaxAt != 3 || !slices.Equal(all.PerSecond, []int64{3, 1, 3, 4, 1, 3}) {
		t.Fatalf("all %+v", all)
	}
	// Ties keep the earliest second.
	var e secBuckets
	e.add(start+s/2, start)
	e.add(start+s/2, start)
	e.add(start+s/2, start)
	e.add(start+s/2, start)
	var w3 BucketSummary
	w3.add(e)
	all.merge(w3)
	if all.Max != 4 || all.MaxAt != 0 {
		t.Fatalf("tie: %+v", all)
	}
}

func TestRoom(t *testing.T) {
	const n = 200
	o := opts(server(t), ModeRoom, n)
	o.Rate = 1000
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Room
	var sb strings.Builder
	rep.Print(&sb)
	t.Log("\n" + sb.String())
	if rep.Connected != n || rep.Failed != 0 || rep.Lost != 0 || r.Topic != "room:big" || r.PresenceMode != PresenceFull {
		t.Fatalf("report %+v", rep)
	}
	if r.Live != n || r.Sent != n || r.OK != n || r.Refused != 0 || r.Unanswered != 0 || r.SendErrors != 0 ||
		r.ParseErrors != 0 || r.ChannelErrors != 0 {
		t.Fatalf("room %+v", r)
	}
	if r.TimedOut || r.Complete != n || r.Incomplete != 0 || r.Settle == nil || time.Duration(*r.Settle) > 20*time.Second {
		t.Fatalf("completion: %+v", r)
	}
	// 200 joins at 1,000/s: the last is sent ≈ 0.2 s after the start.
	if r.SendRate < 500 || r.SendRate > 1100 || r.Achieved <= 0 || time.Duration(r.LastSendAt) < 150*time.Millisecond {
		t.Fatalf("rates: sent %.0f/s (last at %s), ok %.0f/s", r.SendRate, time.Duration(r.LastSendAt), r.Achieved)
	}
	if r.JoinLatency.N != n {
		t.Fatalf("join latency %v", r.JoinLatency)
	}
	// Each client gets one presence_state, and every join broadcast after
	// its own subscription as (part of) a presence_diff: at most n diffs
	// each (fewer when the server puts several joins in one diff). How many
	// in all depends on how far the broadcasts lag the joins, so only
	// bounds that hold whatever the load are checked.
	if r.StateFrames.N != n || r.StateFrames.Min != 1 || r.StateFrames.Max != 1 || r.StateBytes.Min < 50 {
		t.Fatalf("presence_state: %+v %+v", r.StateFrames, r.StateBytes)
	}
	total := int64(r.DiffFrames.Mean*float64(n) + 0.5)
	if r.DiffFrames.Max > n+1 || total < n/10 || total > n*(n+1) || r.DiffBytes.Max < 50*r.DiffFrames.Max {
		t.Fatalf("presence_diff: %+v %+v", r.DiffFrames, r.DiffBytes)
	}
	if r.CountFrames.Max != 0 {
		t.Fatalf("presence_count: %+v", r.CountFrames)
	}
	var sum int64
	for _, x := range r.Updates.PerSecond {
		sum += x
	}
	if sum != total || r.Updates.Max <= 0 || int64(r.Updates.Max) > r.DiffFrames.Max {
		t.Fatalf("updates %+v, diff frames %d", r.Updates, total)
	}
	if r.ServerCPU <= 0 || r.HWM <= 0 {
		t.Fatalf("server cpu %v, rss peak %d", r.ServerCPU, r.HWM)
	}
	if r.NetErr != "" {
		t.Fatalf("net counters: %s", r.NetErr)
	}
}

// Count mode against a server that may not support it: either every
// client ends with presence_count {keys: n, metas: n}, or the run reports
// the timeout with every view incomplete.
func TestRoomCount(t *testing.T) {
	const n = 20
	o := opts(server(t), ModeRoom, n)
	o.Rate, o.PresenceMode, o.Timeout = 1000, PresenceCount, 5*time.Second
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Room
	var sb strings.Builder
	rep.Print(&sb)
	t.Log("\n" + sb.String())
	if r.Sent != n || r.OK+r.Refused != n || rep.Lost != 0 {
		t.Fatalf("room %+v", r)
	}
	switch {
	case r.Complete == n:
		if r.TimedOut || r.CountFrames.Min < 1 || r.Settle == nil {
			t.Fatalf("complete: %+v", r)
		}
	case r.TimedOut && r.Incomplete == n && r.Complete == 0:
		if r.CountFrames.Max != 0 || !strings.Contains(sb.String(), "TIMEOUT") {
			t.Fatalf("timed out: %+v", r)
		}
	default:
		t.Fatalf("room %+v", r)
	}
}

// The reader's cost per presence_diff of one join, envelope included.
func BenchmarkRoomDiff(b *testing.B) {
	w := &worker{job: Job{Mode: ModeRoom, Topic: "room:big", Total: 10000}}
	c := &client{room: &roomClient{view: roomView{n: 10000, synced: true}}}
	frames := make([][]byte, 1000)
	for i := range frames {
		frames[i] = fmt.Appendf(nil, `[null,null,"room:big","presence_diff",{"joins":{"u%d":{"metas":[{"n":%d,"phx_ref":"GHx9vQ3k2lE%05d","status":"online"}]}},"leaves":{}}]`, i, i, i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w.handle(c, frames[i%len(frames)], 1, 1)
	}
	if c.room.parseErrs != 0 {
		b.Fatal("parse errors")
	}
}
