package client

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func mustState(t *testing.T, s string) State {
	t.Helper()
	var st State
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		t.Fatalf("state %s: %v", s, err)
	}
	return st
}

// refs renders a state as "key:ref,ref;key:ref" in key order.
func refs(st State) string {
	var parts []string
	for _, k := range sortedKeys(st) {
		var rs []string
		for _, m := range st[k].Metas {
			rs = append(rs, m.Ref)
		}
		parts = append(parts, k+":"+strings.Join(rs, ","))
	}
	return strings.Join(parts, ";")
}

func sortedKeys(st State) []string { return slices.Sorted(maps.Keys(st)) }

func metaRefs(e Entry) string {
	var rs []string
	for _, m := range e.Metas {
		rs = append(rs, m.Ref)
	}
	return strings.Join(rs, ",")
}

// log records callbacks as strings.
type cbLog struct{ calls []string }

func (l *cbLog) join(key string, cur *Entry, joined Entry) {
	c := "nil"
	if cur != nil {
		c = "[" + metaRefs(*cur) + "]"
	}
	l.calls = append(l.calls, fmt.Sprintf("join %s cur=%s new=[%s]", key, c, metaRefs(joined)))
}

func (l *cbLog) leave(key string, cur Entry, left Entry) {
	l.calls = append(l.calls, fmt.Sprintf("leave %s cur=[%s] left=[%s]", key, metaRefs(cur), metaRefs(left)))
}

func checkCalls(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("callbacks:\n got %q\nwant %q", got, want)
	}
}

const (
	stateU1U2 = `{"u1":{"metas":[{"id":1,"phx_ref":"1"}]},"u2":{"metas":[{"id":2,"phx_ref":"2"}]}}`
)

func TestSyncStateDoesNotMutate(t *testing.T) {
	state := mustState(t, `{"u1":{"metas":[{"id":1,"phx_ref":"1"}]}}`)
	newState := mustState(t, `{"u2":{"metas":[{"id":2,"phx_ref":"2"}]}}`)
	before, beforeNew := refs(state), refs(newState)
	got := SyncState(state, newState, nil, nil)
	if refs(state) != before || refs(newState) != beforeNew {
		t.Errorf("inputs mutated: %s, %s", refs(state), refs(newState))
	}
	if refs(got) != "u2:2" {
		t.Errorf("got %s, want u2:2", refs(got))
	}
}

func TestSyncStateJoinsAndLeaves(t *testing.T) {
	state := mustState(t, `{"u4":{"metas":[{"id":4,"phx_ref":"4"}]}}`)
	var l cbLog
	got := SyncState(state, mustState(t, stateU1U2), l.join, l.leave)
	checkCalls(t, l.calls, "join u1 cur=nil new=[1]", "join u2 cur=nil new=[2]", "leave u4 cur=[] left=[4]")
	if refs(got) != "u1:1;u2:2" {
		t.Errorf("got %s", refs(got))
	}
}

func TestSyncStateJoinsOnlyNewMetas(t *testing.T) {
	state := mustState(t, `{"u3":{"metas":[{"id":3,"phx_ref":"3"}]}}`)
	newState := mustState(t, `{"u3":{"metas":[{"id":3,"phx_ref":"3"},{"id":3,"phx_ref":"3.new"}]}}`)
	var l cbLog
	got := SyncState(state, newState, l.join, l.leave)
	checkCalls(t, l.calls, "join u3 cur=[3] new=[3.new]")
	if refs(got) != "u3:3,3.new" {
		t.Errorf("got %s", refs(got))
	}
}

func TestSyncDiffOnEmptyState(t *testing.T) {
	joins := mustState(t, `{"u1":{"metas":[{"id":1,"phx_ref":"1"}]}}`)
	got := SyncDiff(State{}, Diff{Joins: joins}, nil, nil)
	if refs(got) != "u1:1" {
		t.Errorf("got %s", refs(got))
	}
}

func TestSyncDiffRemovesKeyAndAppendsJoins(t *testing.T) {
	state := mustState(t, `{"u1":{"metas":[{"id":1,"phx_ref":"1"}]},"u2":{"metas":[{"id":2,"phx_ref":"2"}]}}`)
	diff := Diff{
		Joins:  mustState(t, `{"u1":{"metas":[{"id":1,"phx_ref":"1.2"}]}}`),
		Leaves: mustState(t, `{"u2":{"metas":[{"id":2,"phx_ref":"2"}]}}`),
	}
	var l cbLog
	got := SyncDiff(state, diff, l.join, l.leave)
	if refs(got) != "u1:1,1.2" {
		t.Errorf("got %s, want u1:1,1.2", refs(got))
	}
	checkCalls(t, l.calls, "join u1 cur=[1] new=[1.2]", "leave u2 cur=[] left=[2]")
	if refs(state) != "u1:1;u2:2" {
		t.Errorf("SyncDiff mutated its input: %s", refs(state))
	}
}

func TestSyncDiffRemovesOneMeta(t *testing.T) {
	state := mustState(t, `{"u1":{"metas":[{"id":1,"phx_ref":"1"},{"id":1,"phx_ref":"1.2"}]}}`)
	diff := Diff{Leaves: mustState(t, `{"u1":{"metas":[{"id":1,"phx_ref":"1"}]}}`)}
	var l cbLog
	got := SyncDiff(state, diff, l.join, l.leave)
	if refs(got) != "u1:1.2" {
		t.Errorf("got %s", refs(got))
	}
	checkCalls(t, l.calls, "leave u1 cur=[1.2] left=[1]")
}

func TestObjectPrototypeKeys(t *testing.T) {
	newState := mustState(t, `{"__proto__":{"metas":[{"phx_ref":"p"}]},"constructor":{"metas":[{"phx_ref":"c"}]},"toString":{"metas":[{"phx_ref":"s"}]}}`)
	got := SyncState(State{}, newState, nil, nil)
	if refs(got) != "__proto__:p;constructor:c;toString:s" {
		t.Errorf("syncState: %s", refs(got))
	}
	got = SyncDiff(got, Diff{Leaves: mustState(t, `{"constructor":{"metas":[{"phx_ref":"c"}]}}`)}, nil, nil)
	if refs(got) != "__proto__:p;toString:s" {
		t.Errorf("syncDiff: %s", refs(got))
	}
}

// newTestChannel returns a Channel not attached to any connection, whose
// events a test triggers by hand.
func newTestChannel() *Channel {
	s := &Socket{replies: map[string]func(Message){}, events: newEventQueue()}
	return s.Channel("room:lobby", nil)
}

// fire delivers a frame to the channel's bindings synchronously, as the
// event goroutine would, with the channel's join_ref set to joinRef.
func fire(ch *Channel, eventName, payload, joinRef string) {
	ch.s.mu.Lock()
	ch.joinRef = joinRef
	bs := ch.bindings[eventName]
	ch.s.mu.Unlock()
	for _, b := range bs {
		b.f(event{payload: json.RawMessage(payload), joinRef: joinRef})
	}
}

func TestList(t *testing.T) {
	ch := newTestChannel()
	p := NewPresence(ch, nil)
	fire(ch, "presence_state", `{"u2":{"metas":[{"id":2,"phx_ref":"2"}]},"u1":{"metas":[{"id":1,"phx_ref":"1"}]}}`, "1")
	list := p.List()
	if len(list) != 2 || metaRefs(list[0]) != "1" || metaRefs(list[1]) != "2" {
		t.Errorf("List() = %+v", list)
	}
	chosen := ListBy(p, func(key string, e Entry) string { return key + "=" + metaRefs(e) })
	if !reflect.DeepEqual(chosen, []string{"u1=1", "u2=2"}) {
		t.Errorf("ListBy = %q", chosen)
	}
}

func TestInstanceSyncsStateThenDiffs(t *testing.T) {
	ch := newTestChannel()
	p := NewPresence(ch, nil)
	var l cbLog
	syncs := 0
	p.OnJoin(l.join)
	p.OnLeave(l.leave)
	p.OnSync(func() { syncs++ })
	fire(ch, "presence_state", `{"u1":{"metas":[{"id":1,"phx_ref":"1"}]}}`, "1")
	fire(ch, "presence_diff", `{"joins":{"u2":{"metas":[{"id":2,"phx_ref":"2"}]}},"leaves":{"u1":{"metas":[{"id":1,"phx_ref":"1"}]}}}`, "1")
	if got := strings.Join(p.Keys(), ","); got != "u2" {
		t.Errorf("keys %s, want u2", got)
	}
	if syncs != 2 {
		t.Errorf("onSync called %d times, want 2", syncs)
	}
	checkCalls(t, l.calls, "join u1 cur=nil new=[1]", "join u2 cur=nil new=[2]", "leave u1 cur=[] left=[1]")
}

func TestQueuesDiffsUntilStateAfterEachJoin(t *testing.T) {
	ch := newTestChannel()
	p := NewPresence(ch, nil)
	var l cbLog
	p.OnJoin(l.join)
	p.OnLeave(l.leave)
	// A diff before the first state is queued.
	fire(ch, "presence_diff", `{"joins":{},"leaves":{"u2":{"metas":[{"id":2,"phx_ref":"2"}]}}}`, "1")
	if !p.InPendingSyncState() {
		t.Error("not pending before the first state")
	}
	if len(p.Keys()) != 0 || len(l.calls) != 0 {
		t.Fatalf("diff applied before state: %v %q", p.Keys(), l.calls)
	}
	fire(ch, "presence_state", stateU1U2, "1")
	checkCalls(t, l.calls, "join u1 cur=nil new=[1]", "join u2 cur=nil new=[2]", "leave u2 cur=[] left=[2]")
	if got := strings.Join(p.Keys(), ","); got != "u1" {
		t.Errorf("keys %s, want u1", got)
	}

	// After a rejoin (new join_ref) diffs are queued again until the next
	// state.
	l.calls = nil
	fire(ch, "presence_diff", `{"joins":{},"leaves":{"u1":{"metas":[{"id":1,"phx_ref":"1"}]}}}`, "2")
	if !p.InPendingSyncState() {
		t.Error("not pending after the join_ref changed")
	}
	if len(l.calls) != 0 {
		t.Fatalf("diff applied before the new state: %q", l.calls)
	}
	fire(ch, "presence_state", `{"u1":{"metas":[{"id":1,"phx_ref":"1"}]},"u3":{"metas":[{"id":3,"phx_ref":"3"}]}}`, "2")
	checkCalls(t, l.calls, "join u3 cur=nil new=[3]", "leave u1 cur=[] left=[1]")
	if got := strings.Join(p.Keys(), ","); got != "u3" {
		t.Errorf("keys %s, want u3", got)
	}
}

func TestCustomEventNames(t *testing.T) {
	ch := newTestChannel()
	p := NewPresence(ch, &PresenceOptions{StateEvent: "the_state", DiffEvent: "the_diff"})
	fire(ch, "the_state", stateU1U2, "1")
	fire(ch, "the_diff", `{"joins":{},"leaves":{"u1":{"metas":[{"phx_ref":"1"}]}}}`, "1")
	fire(ch, "presence_state", `{}`, "1") // not ours
	if got := strings.Join(p.Keys(), ","); got != "u2" {
		t.Errorf("keys %s, want u2", got)
	}
}

func TestUpdateReplacesMeta(t *testing.T) {
	ch := newTestChannel()
	p := NewPresence(ch, nil)
	var l cbLog
	p.OnJoin(l.join)
	p.OnLeave(l.leave)
	fire(ch, "presence_state", `{"u2":{"metas":[{"id":2,"phx_ref":"2"}]}}`, "1")
	l.calls = nil
	fire(ch, "presence_diff", `{"joins":{"u2":{"metas":[{"id":2,"phx_ref":"2.2","phx_ref_prev":"2"}]}},"leaves":{"u2":{"metas":[{"id":2,"phx_ref":"2"}]}}}`, "1")
	checkCalls(t, l.calls, "join u2 cur=[2] new=[2.2]", "leave u2 cur=[2.2] left=[2]")
	e, ok := p.Get("u2")
	if !ok || metaRefs(e) != "2.2" {
		t.Errorf("u2 = %+v, %v", e, ok)
	}
}

func TestEntryExtraFieldsAndJSON(t *testing.T) {
	st := mustState(t, `{"u1":{"metas":[{"name":"a","phx_ref":"1"}],"user":{"id":7}}}`)
	e := st["u1"]
	if string(e.Extra["user"]) != `{"id":7}` || string(e.Metas[0].Raw) != `{"name":"a","phx_ref":"1"}` {
		t.Fatalf("decoded %+v", e)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"u1":{"metas":[{"name":"a","phx_ref":"1"}],"user":{"id":7}}}` {
		t.Errorf("re-encoded %s", b)
	}
}

func TestCallbacksMayReadPresence(t *testing.T) {
	ch := newTestChannel()
	p := NewPresence(ch, nil)
	var seen []string
	p.OnJoin(func(key string, _ *Entry, _ Entry) { seen = append(seen, strings.Join(p.Keys(), ",")) })
	p.OnSync(func() { seen = append(seen, "sync "+strings.Join(p.Keys(), ",")) })
	fire(ch, "presence_state", stateU1U2, "1")
	if !reflect.DeepEqual(seen, []string{"u1,u2", "u1,u2", "sync u1,u2"}) {
		t.Errorf("seen %q", seen)
	}
}
