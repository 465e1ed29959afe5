package presencechannel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenFillers are keys tracked in the topic only so that its diff window
// is long: min(DiffWindow, 1 ms a key), here a second, far more than the
// changes of one window take even on a loaded machine.
const goldenFillers = 1000

// One window's changes, as the frames of the one presence_diff a V2 and a
// V1 member get for it (testdata/coalesced_diff_v2.golden and _v1.golden,
// phx_refs renamed r1, r2… in order of appearance; go test -update
// rewrites them): k reconnects (owner A leaves, owner B joins under the
// same key with a new meta), a ghost joins and leaves (never sent), u
// updates its meta with presence:update (the new meta carries phx_ref_prev,
// the old one leaves), "leaver" leaves and "newbie" joins. Keys are sorted
// in joins and leaves; V2 is [null,null,topic,"presence_diff",payload], V1
// {"topic","event","payload","ref":null} without join_ref, with the same
// payload bytes.
func TestCoalescedDiffGolden(t *testing.T) {
	ctx := context.Background()
	const topic = "room:golden"
	p, err := presence.New(presence.Config{DiffWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	st := startStack(t, p, presencechannel.Config{Presence: p}, phx.Config{})
	track := func(owner, key, meta string) {
		t.Helper()
		if _, err := p.Track(ctx, owner, topic, key, json.RawMessage(meta)); err != nil {
			t.Fatal(err)
		}
	}
	untrack := func(owner, key string) {
		t.Helper()
		if err := p.Untrack(ctx, owner, topic, key); err != nil {
			t.Fatal(err)
		}
	}
	for i := range goldenFillers {
		k := fmt.Sprintf("f%04d", i)
		track(k, k, `{}`)
	}
	track("A", "k", `{"device":"laptop","status":"online"}`)
	track("L", "leaver", `{"device":"phone"}`)
	p.Sync()

	// The members: a V2 and a V1 socket that only watch.
	v2, _ := st.dial(t, url.Values{"user_id": {"w2"}})
	v2.send(`["1","1","` + topic + `","phx_join",{}]`)
	v2.rawUntil(t, "presence_state")
	v1, _ := st.dial(t, url.Values{"user_id": {"w1"}, "vsn": {"1.0.0"}})
	v1.send(`{"topic":"` + topic + `","event":"phx_join","payload":{},"ref":"1"}`)
	v1.rawUntil(t, "presence_state")

	// u joins: a quiet topic's change goes at once, and the window of
	// the next changes starts.
	start := time.Now()
	u := st.user(t, "u")
	u.join("1", topic, `{"meta":{"status":"online"}}`)
	v2.rawUntil(t, "presence_diff")
	v1.rawUntil(t, "presence_diff")

	// One window.
	untrack("A", "k") // k reconnects
	track("B", "k", `{"device":"laptop","status":"back"}`)
	track("G", "ghost", `{"device":"ghost"}`) // joins and leaves: never sent
	untrack("G", "ghost")
	if got := u.call(`["1","2","` + topic + `","presence:update",{"meta":{"status":"away"}}]`); got != replyOK {
		t.Fatalf("presence:update: %s", got)
	}
	untrack("L", "leaver")
	track("N", "newbie", `{"device":"tablet"}`)
	if err := p.Settle(ctx, topic); err != nil { // all of it in the window
		t.Fatal(err)
	}
	if took, window := time.Since(start), time.Duration(goldenFillers)*time.Millisecond; took >= window {
		t.Fatalf("the window's changes took %v, more than the %v window: this machine is too slow for the test", took, window)
	}
	p.Sync() // ends the window

	f2, f1 := v2.rawNext(t), v1.rawNext(t)
	if eventOf(f2) != "presence_diff" || eventOf(f1) != "presence_diff" {
		t.Fatalf("after the window, not its presence_diff:\nV2 %s\nV1 %s", f2, f1)
	}
	for _, c := range []*client{v2, v1} {
		c.ws.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, b, err := c.ws.ReadMessage(); err == nil {
			t.Fatalf("a second frame after the window's presence_diff: %s", b)
		}
	}

	// The frames' shapes, then the bytes.
	var a []json.RawMessage
	if err := json.Unmarshal(f2, &a); err != nil || len(a) != 5 || string(a[0]) != "null" || string(a[1]) != "null" ||
		string(a[2]) != `"`+topic+`"` || string(a[3]) != `"presence_diff"` {
		t.Fatalf("V2 frame: %s (%v)", f2, err)
	}
	var o map[string]json.RawMessage
	if err := json.Unmarshal(f1, &o); err != nil || len(o) != 4 || string(o["topic"]) != `"`+topic+`"` ||
		string(o["event"]) != `"presence_diff"` || string(o["ref"]) != "null" || o["payload"] == nil {
		t.Fatalf("V1 frame: %s (%v)", f1, err)
	}
	p2, p1 := a[4], o["payload"]
	if !bytes.Equal(p2, p1) {
		t.Fatalf("V1 and V2 payloads differ:\nV2 %s\nV1 %s", p2, p1)
	}
	var d struct {
		Joins, Leaves map[string]struct {
			Metas []map[string]any `json:"metas"`
		}
	}
	if err := json.Unmarshal(p2, &d); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]struct {
		Metas []map[string]any `json:"metas"`
	}) string {
		var ks []string
		for k, e := range m {
			ks = append(ks, fmt.Sprint(k, len(e.Metas)))
		}
		return fmt.Sprint(ks)
	}
	if len(d.Joins) != 3 || len(d.Leaves) != 3 || d.Joins["ghost"].Metas != nil || d.Leaves["ghost"].Metas != nil ||
		len(d.Joins["k"].Metas) != 1 || len(d.Leaves["k"].Metas) != 1 || len(d.Joins["u"].Metas) != 1 || len(d.Leaves["u"].Metas) != 1 ||
		d.Joins["u"].Metas[0]["phx_ref_prev"] != d.Leaves["u"].Metas[0]["phx_ref"] {
		t.Fatalf("the window's diff: joins %s, leaves %s: %s", keys(d.Joins), keys(d.Leaves), p2)
	}
	golden(t, "coalesced_diff_v2.golden", normRefs(f2))
	golden(t, "coalesced_diff_v1.golden", normRefs(f1))
}

// rawNext reads the next frame, as sent (V1 or V2 text).
func (c *client) rawNext(t *testing.T) []byte {
	t.Helper()
	c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	mt, b, err := c.ws.ReadMessage()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if mt != websocket.TextMessage {
		t.Fatalf("recv: a binary frame %x", b)
	}
	return b
}

// rawUntil reads frames until one of event ev arrives and returns it.
func (c *client) rawUntil(t *testing.T, ev string) []byte {
	t.Helper()
	for {
		if b := c.rawNext(t); eventOf(b) == ev {
			return b
		}
	}
}

// eventOf is the event of a V1 or V2 text frame.
func eventOf(b []byte) string {
	var a []json.RawMessage
	if json.Unmarshal(b, &a) == nil && len(a) == 5 {
		var ev string
		json.Unmarshal(a[3], &ev)
		return ev
	}
	var o struct {
		Event string `json:"event"`
	}
	json.Unmarshal(b, &o)
	return o.Event
}

var refRE = regexp.MustCompile(`"(phx_ref|phx_ref_prev)":"([^"]*)"`)

// normRefs renames each distinct phx_ref (or phx_ref_prev) value r1, r2…
// in order of appearance: refs are random.
func normRefs(b []byte) []byte {
	names := map[string]string{}
	return refRE.ReplaceAllFunc(b, func(m []byte) []byte {
		sub := refRE.FindSubmatch(m)
		v := string(sub[2])
		if names[v] == "" {
			names[v] = fmt.Sprintf("r%d", len(names)+1)
		}
		return []byte(`"` + string(sub[1]) + `":"` + names[v] + `"`)
	})
}

// golden compares got with testdata/name, or writes it there under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	got = append(bytes.TrimSpace(got), '\n')
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./phx/presencechannel/ -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./phx/presencechannel/ -run %s -update rewrites it):\ngot  %s\nwant %s", path, t.Name(), strings.TrimSpace(string(got)), strings.TrimSpace(string(want)))
	}
}
