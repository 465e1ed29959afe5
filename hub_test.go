package presence

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/gopresence/presence/tracker"
)

// member is a subscriber of a topic as phoenix.js keeps it: diffs that
// come before its presence_state are held and applied after it.
type member struct {
	state   map[string][]string // key → phx_refs
	pending []Diff
	synced  bool
}

func refOf(m json.RawMessage) string {
	var v struct {
		Ref string `json:"phx_ref"`
	}
	json.Unmarshal(m, &v)
	return v.Ref
}

func (m *member) receive(d Diff) {
	if !m.synced {
		m.pending = append(m.pending, d)
		return
	}
	m.apply(d)
}

func (m *member) sync(s State) {
	m.state = map[string][]string{}
	for k, e := range s {
		for _, x := range e.Metas {
			m.state[k] = append(m.state[k], refOf(x))
		}
	}
	m.synced = true
	for _, d := range m.pending {
		m.apply(d)
	}
	m.pending = nil
}

// apply is phoenix.js's syncDiff: joins (a joined ref replaces the same
// ref), then leaves (by ref); a key without metas is gone.
func (m *member) apply(d Diff) {
	for k, e := range d.Joins {
		joined := map[string]bool{}
		var refs []string
		for _, x := range e.Metas {
			joined[refOf(x)] = true
			refs = append(refs, refOf(x))
		}
		kept := slices.DeleteFunc(slices.Clone(m.state[k]), func(r string) bool { return joined[r] })
		m.state[k] = append(kept, refs...)
	}
	for k, e := range d.Leaves {
		left := map[string]bool{}
		for _, x := range e.Metas {
			left[refOf(x)] = true
		}
		if rest := slices.DeleteFunc(m.state[k], func(r string) bool { return left[r] }); len(rest) > 0 {
			m.state[k] = rest
		} else {
			delete(m.state, k)
		}
	}
}

func refsOf(s map[string][]string) map[string][]string {
	out := map[string][]string{}
	for k, rs := range s {
		out[k] = slices.Sorted(slices.Values(rs))
	}
	return out
}

// Whatever the windows do — joins and leaves cancelling inside one, metas
// leaving and coming back (a replica down, then up), members joining in the
// middle of a burst and receiving diffs before their presence_state — every
// member's copy equals the topic after each diff, and at the end the
// truth. Online and Offline are the keys that appeared and disappeared.
func TestHubMembersStayExact(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		type elem struct {
			owner, key string
			meta       json.RawMessage
		}
		truth := map[string]elem{} // ref → present meta
		gone := map[string]elem{}  // refs that left and may come back
		keys := []string{"a", "b", "c", "d"}
		next := 0
		var seq uint64

		// Some history before the hub exists: it starts from a listing at
		// seq, and the diffs up to seq are delivered to it again.
		var early []tracker.Diff
		newMeta := func() elem {
			next++
			ref := fmt.Sprintf("r%d", next)
			return elem{fmt.Sprintf("o%d", next), rapid.SampledFrom(keys).Draw(t, "key"),
				json.RawMessage(fmt.Sprintf(`{"phx_ref":%q}`, ref))}
		}
		step := func() tracker.Diff {
			seq++
			d := tracker.Diff{Topic: "t", Seq: seq}
			// A diff lists joins, then leaves (phoenix.js applies them in
			// that order), so a meta that left in this step comes back in a
			// later one.
			back := slices.Sorted(maps.Keys(gone))
			for range rapid.IntRange(1, 3).Draw(t, "changes") {
				switch op := rapid.IntRange(0, 3).Draw(t, "op"); {
				case op == 0 || len(truth) == 0:
					e := newMeta()
					truth[refOf(e.meta)] = e
					d.Joins = append(d.Joins, tracker.Presence{Owner: e.owner, Key: e.key, Meta: e.meta})
					if rapid.Bool().Draw(t, "joinAndLeave") { // in one step
						delete(truth, refOf(e.meta))
						d.Leaves = append(d.Leaves, tracker.Presence{Owner: e.owner, Key: e.key, Meta: e.meta})
					}
				case op == 1 && len(back) > 0: // back, same meta
					i := rapid.IntRange(0, len(back)-1).Draw(t, "back")
					r := back[i]
					back = slices.Delete(back, i, i+1)
					e := gone[r]
					delete(gone, r)
					truth[r] = e
					d.Joins = append(d.Joins, tracker.Presence{Owner: e.owner, Key: e.key, Meta: e.meta})
				default:
					r := rapid.SampledFrom(slices.Sorted(maps.Keys(truth))).Draw(t, "leave")
					e := truth[r]
					delete(truth, r)
					gone[r] = e
					d.Leaves = append(d.Leaves, tracker.Presence{Owner: e.owner, Key: e.key, Meta: e.meta})
				}
			}
			return d
		}
		for range rapid.IntRange(0, 5).Draw(t, "before") {
			early = append(early, step())
		}
		var listing []tracker.Presence
		for _, r := range slices.Sorted(maps.Keys(truth)) {
			e := truth[r]
			listing = append(listing, tracker.Presence{Owner: e.owner, Key: e.key, Meta: e.meta})
		}
		slices.SortFunc(listing, func(a, b tracker.Presence) int { return cmpStr(a.Owner, b.Owner) })
		h := newHub("t")
		h.fill(listing, seq)
		for _, d := range early {
			h.add(d) // already in the listing
		}

		var members []*member
		view := func() map[string][]string {
			m := &member{}
			m.sync(h.stateOf())
			return refsOf(m.state)
		}
		before := view()
		for range rapid.IntRange(1, 60).Draw(t, "steps") {
			switch rapid.IntRange(0, 3).Draw(t, "what") {
			case 0, 1:
				h.add(step())
			case 2: // a window ends
				d, ok := h.take()
				after := view()
				if !ok {
					if !mapsEqual(before, after) {
						t.Fatalf("no diff, but the view changed: %v → %v", before, after)
					}
					continue
				}
				for _, m := range members {
					m.receive(d)
				}
				var online, offline []string
				for _, k := range keys {
					_, was := before[k]
					_, is := after[k]
					if !was && is {
						online = append(online, k)
					}
					if was && !is {
						offline = append(offline, k)
					}
				}
				if !slices.Equal(d.Online, online) || !slices.Equal(d.Offline, offline) {
					t.Fatalf("online %v offline %v, want %v %v", d.Online, d.Offline, online, offline)
				}
				before = after
				for i, m := range members {
					if m.synced && !mapsEqual(refsOf(m.state), after) {
						t.Fatalf("member %d holds %v, the topic %v", i, refsOf(m.state), after)
					}
				}
			case 3: // a member subscribes; its presence_state may come later
				m := &member{}
				members = append(members, m)
			}
			// members subscribed but not yet synced get their state now or later
			for _, m := range members {
				if !m.synced && rapid.Bool().Draw(t, "syncNow") {
					m.sync(h.stateOf())
				}
			}
		}
		if d, ok := h.take(); ok {
			for _, m := range members {
				m.receive(d)
			}
		}
		want := map[string][]string{}
		for r, e := range truth {
			want[e.key] = append(want[e.key], r)
		}
		want = refsOf(want)
		if got := view(); !mapsEqual(got, want) {
			t.Fatalf("hub view %v, truth %v", got, want)
		}
		if h.metas != len(truth) {
			t.Fatalf("hub counts %d metas, truth %d", h.metas, len(truth))
		}
		for i, m := range members {
			if !m.synced {
				m.sync(h.stateOf())
			}
			if got := refsOf(m.state); !mapsEqual(got, want) {
				t.Fatalf("member %d holds %v, truth %v", i, got, want)
			}
		}
	})
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func mapsEqual(a, b map[string][]string) bool {
	return maps.EqualFunc(a, b, slices.Equal[[]string])
}
