package presence_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"

	"github.com/gopresence/presence"
)

// These tests follow the scenarios of Phoenix's own presence_test.exs.
// Where an Elixir mechanism has no Go counterpart, the test checks what
// takes its place and says so.

func meta(s string) json.RawMessage { return json.RawMessage(s) }

func field(t *testing.T, m json.RawMessage, k string) any {
	t.Helper()
	var x map[string]any
	if err := json.Unmarshal(m, &x); err != nil {
		t.Fatal(err)
	}
	return x[k]
}

// Where Phoenix checks its supervisor child spec: New(Config) builds a
// Presence whose zero Config is a working single node; Start/Shutdown are
// its lifecycle.
func TestNewAndLifecycle(t *testing.T) {
	p, err := presence.New(presence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Track(ctx, "o", "t", "k", meta(`{}`)); err != presence.ErrClosed {
		t.Fatalf("track after shutdown: %v", err)
	}
}

func TestDefaultFetchIsIdentity(t *testing.T) {
	p := start(t, presence.Config{})
	p.Track(context.Background(), "o", "t", "u1", meta(`{"a":1}`))
	st := p.List("t")
	if len(st) != 1 || len(st["u1"].Metas) != 1 || st["u1"].Extra != nil || field(t, st["u1"].Metas[0], "a") != 1.0 {
		t.Fatalf("%s", mustJSON(st))
	}
}

func withExtra(topic string, s presence.State) presence.State {
	for _, e := range s {
		e.Extra = map[string]json.RawMessage{"user": json.RawMessage(`{"name":"x"}`)}
	}
	return s
}

func TestListWithCustomFetch(t *testing.T) {
	p := start(t, presence.Config{Fetch: withExtra})
	if st := p.List("t"); len(st) != 0 {
		t.Fatal("not empty")
	}
	p.Track(context.Background(), "o", "t", "u1", meta(`{}`))
	b, _ := json.Marshal(p.List("t"))
	var got map[string]map[string]any
	json.Unmarshal(b, &got)
	if got["u1"]["user"] == nil || got["u1"]["metas"] == nil {
		t.Fatalf("%s", b)
	}
}

// Phoenix lists integer keys as strings; in Go keys are strings, and a key
// that looks like a number is listed as that string.
func TestKeysAreStrings(t *testing.T) {
	p := start(t, presence.Config{})
	p.Track(context.Background(), "o", "t", "1", meta(`{}`))
	if p.List("t")["1"] == nil {
		t.Fatal("key 1")
	}
}

func TestGetByKey(t *testing.T) {
	p := start(t, presence.Config{Fetch: withExtra})
	ctx := context.Background()
	if p.Get("t", "u1") != nil {
		t.Fatal("absent key")
	}
	p.Track(ctx, "o1", "t", "u1", meta(`{"n":1}`))
	p.Track(ctx, "o2", "t", "u1", meta(`{"n":2}`))
	e := p.Get("t", "u1")
	if e == nil || len(e.Metas) != 2 || field(t, e.Metas[0], "n") != 1.0 || e.Extra["user"] == nil {
		t.Fatalf("%s", mustJSON(e))
	}
	if p.Get("t", "u2") != nil || p.Get("other", "u1") != nil {
		t.Fatal("other key/topic")
	}
}

func TestTrackAndOwnerDeathDiffs(t *testing.T) {
	p := start(t, presence.Config{})
	var rec recorder
	defer p.Subscribe("t", rec.add)()
	ctx := context.Background()
	p.Track(ctx, "o1", "t", "u1", meta(`{}`))
	p.UntrackOwner(ctx, "o1") // the owner died
	p.Sync()
	ds := rec.all()
	if len(ds) != 2 || len(ds[0].Joins["u1"].Metas) != 1 || len(ds[0].Leaves) != 0 ||
		len(ds[1].Leaves["u1"].Metas) != 1 || len(ds[1].Joins) != 0 {
		t.Fatalf("%s", mustJSON(ds))
	}
	if len(p.List("t")) != 0 {
		t.Fatal("not empty")
	}
}

func TestDiffsCarryFetchExtras(t *testing.T) {
	p := start(t, presence.Config{Fetch: withExtra})
	var rec recorder
	defer p.Subscribe("t", rec.add)()
	ctx := context.Background()
	p.Track(ctx, "o1", "t", "u1", meta(`{}`))
	p.Untrack(ctx, "o1", "t", "u1")
	p.Sync()
	ds := rec.all()
	if ds[0].Joins["u1"].Extra["user"] == nil || ds[1].Leaves["u1"].Extra["user"] == nil {
		t.Fatalf("%s", mustJSON(ds))
	}
}

// Where Phoenix takes a custom dispatcher: Subscribe is the dispatch point;
// every subscriber of the topic receives every presence_diff.
func TestSubscribersReceiveDiffs(t *testing.T) {
	p := start(t, presence.Config{})
	var a, b recorder
	defer p.Subscribe("t", a.add)()
	defer p.Subscribe("t", b.add)()
	p.Track(context.Background(), "o", "t", "u", meta(`{}`))
	p.Sync()
	if len(a.all()) != 1 || len(b.all()) != 1 {
		t.Fatal("each subscriber gets the diff")
	}
}

func TestUntrackKeepsOtherKeys(t *testing.T) {
	p := start(t, presence.Config{})
	ctx := context.Background()
	p.Track(ctx, "o", "t", "u1", meta(`{}`))
	p.Track(ctx, "o", "t", "u2", meta(`{}`))
	p.Sync()
	var rec recorder
	defer p.Subscribe("t", rec.add)()
	p.Untrack(ctx, "o", "t", "u1")
	p.Sync()
	if ds := rec.all(); len(ds) != 1 || ds[0].Leaves["u1"] == nil || p.List("t")["u2"] == nil {
		t.Fatalf("%s", mustJSON(ds))
	}
}

// Where Phoenix tracks through a socket struct: the owner string is the
// socket's channel identity; phx/presencechannel tracks with it (see its
// tests).
func TestTrackByOwnerAndTopic(t *testing.T) {
	p := start(t, presence.Config{})
	ctx := context.Background()
	p.Track(ctx, "socket-1/room:1", "room:1", "u", meta(`{}`))
	p.UntrackOwner(ctx, "socket-1/room:1")
	if len(p.List("room:1")) != 0 {
		t.Fatal("not untracked")
	}
}

func TestUntrackUntracked(t *testing.T) {
	p := start(t, presence.Config{})
	if err := p.Untrack(context.Background(), "o", "t", "nobody"); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateOneDiff(t *testing.T) {
	p := start(t, presence.Config{})
	ctx := context.Background()
	r1, _ := p.Track(ctx, "o", "t", "u", meta(`{"v":1}`))
	p.Sync()
	var rec recorder
	defer p.Subscribe("t", rec.add)()
	r2, _ := p.Update(ctx, "o", "t", "u", meta(`{"v":2}`))
	p.Sync()
	ds := rec.all()
	if len(ds) != 1 {
		t.Fatalf("%d diffs", len(ds))
	}
	j, l := ds[0].Joins["u"].Metas[0], ds[0].Leaves["u"].Metas[0]
	if field(t, j, "phx_ref") != r2 || field(t, j, "phx_ref_prev") != r1 || field(t, l, "phx_ref") != r1 || field(t, j, "v") != 2.0 {
		t.Fatalf("%s", mustJSON(ds))
	}
}

func TestUpdateWithoutTrack(t *testing.T) {
	p := start(t, presence.Config{})
	if _, err := p.Update(context.Background(), "o", "t", "u", meta(`{}`)); err != presence.ErrNotTracked {
		t.Fatalf("%v", err)
	}
}

// Where Phoenix lists its fetcher processes (fetchers_pids): fetch runs
// inline on the diff goroutine, so there are no fetcher processes to list;
// Sync waits for every pending diff.
func TestSyncWaitsForFetches(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	p := start(t, presence.Config{Fetch: func(topic string, s presence.State) presence.State {
		mu.Lock()
		calls++
		mu.Unlock()
		return s
	}})
	defer p.Subscribe("t", func(presence.Diff) {})()
	p.Track(context.Background(), "o", "t", "u", meta(`{}`))
	p.Sync()
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 { // the joins of the one diff (an empty side is not fetched)
		t.Fatalf("%d fetch calls", calls)
	}
}

type metasLog struct {
	mu   sync.Mutex
	last map[string]map[string][]json.RawMessage
}

func (l *metasLog) handle(topic string, d presence.Diff, ps map[string][]json.RawMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]map[string][]json.RawMessage{}
	}
	l.last[topic] = ps
}

func (l *metasLog) get(topic string) map[string][]json.RawMessage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[topic]
}

// Phoenix raises when handle_metas is defined without init; a Go closure
// carries its own state, so HandleMetas needs no init; a nil HandleMetas is
// simply off.
func TestHandleMetasNeedsNoInit(t *testing.T) {
	var l metasLog
	p := start(t, presence.Config{HandleMetas: l.handle})
	p.Track(context.Background(), "o", "t", "u", meta(`{}`))
	p.Sync()
	if l.get("t") == nil {
		t.Fatal("not called")
	}
}

func setupMetas(t *testing.T) (*presence.Presence, *metasLog) {
	var l metasLog
	return start(t, presence.Config{HandleMetas: l.handle}), &l
}

func refs(t *testing.T, ms []json.RawMessage) []any {
	var out []any
	for _, m := range ms {
		out = append(out, field(t, m, "phx_ref"))
	}
	return out
}

func TestFirstJoinCreatesTopic(t *testing.T) {
	p, l := setupMetas(t)
	r, _ := p.Track(context.Background(), "o", "t", "u1", meta(`{}`))
	p.Sync()
	if got := l.get("t"); len(got) != 1 || !slices.Equal(refs(t, got["u1"]), []any{r}) {
		t.Fatalf("%v", got)
	}
}

func TestNewKeysAdded(t *testing.T) {
	p, l := setupMetas(t)
	ctx := context.Background()
	p.Track(ctx, "o1", "t", "u1", meta(`{}`))
	p.Track(ctx, "o2", "t", "u2", meta(`{}`))
	p.Sync()
	if got := l.get("t"); len(got) != 2 {
		t.Fatalf("%v", got)
	}
}

func TestMetasAppendedInOrder(t *testing.T) {
	p, l := setupMetas(t)
	ctx := context.Background()
	r1, _ := p.Track(ctx, "o1", "t", "u1", meta(`{}`))
	r2, _ := p.Track(ctx, "o2", "t", "u1", meta(`{}`))
	p.Sync()
	if got := l.get("t"); !slices.Equal(refs(t, got["u1"]), []any{r1, r2}) {
		t.Fatalf("%v", got)
	}
}

func TestLastLeaveEmptiesTopic(t *testing.T) {
	p, l := setupMetas(t)
	ctx := context.Background()
	p.Track(ctx, "o1", "t", "u1", meta(`{}`))
	p.Untrack(ctx, "o1", "t", "u1")
	p.Sync()
	if got := l.get("t"); len(got) != 0 {
		t.Fatalf("%v", got)
	}
}

func TestSingleMetaKeyRemoved(t *testing.T) {
	p, l := setupMetas(t)
	ctx := context.Background()
	p.Track(ctx, "o1", "t", "u1", meta(`{}`))
	p.Track(ctx, "o2", "t", "u2", meta(`{}`))
	p.Untrack(ctx, "o1", "t", "u1")
	p.Sync()
	if got := l.get("t"); len(got) != 1 || got["u2"] == nil {
		t.Fatalf("%v", got)
	}
}

func TestOneMetaOfManyRemoved(t *testing.T) {
	p, l := setupMetas(t)
	ctx := context.Background()
	r1, _ := p.Track(ctx, "o1", "t", "u1", meta(`{}`))
	p.Track(ctx, "o2", "t", "u1", meta(`{}`))
	r3, _ := p.Track(ctx, "o3", "t", "u1", meta(`{}`))
	p.Untrack(ctx, "o2", "t", "u1")
	p.Sync()
	if got := l.get("t"); !slices.Equal(refs(t, got["u1"]), []any{r1, r3}) {
		t.Fatalf("%v", got)
	}
}
