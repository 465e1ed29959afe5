package tracker

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/rawshard"
	"github.com/gopresence/presence/internal/wire"
)

// The reference traces (testdata/tracker-state.jsonl.gz, recorded from
// phoenix_pubsub v2.2.0's State, DeltaGeneration and Replica; one JSON
// object per line with the fields of traceLine, the lines of one trace
// sharing its number) are replayed through the raw shard
// (internal/rawshard) — the code the tracker runs — and every report,
// message size and check must match. PRESENCE_REFERENCE_TRACES names
// another corpus of the same format.

type traceLine struct {
	Trace         int             `json:"trace"`
	Nodes         []string        `json:"nodes"`
	MaxDeltaSizes []int           `json:"max_delta_sizes"`
	Op            string          `json:"op"`
	Node          string          `json:"node"`
	Owner         string          `json:"owner"`
	Topic         string          `json:"topic"`
	Key           string          `json:"key"`
	Meta          json.RawMessage `json:"meta"`
	Msg           int             `json:"msg"`
	DeltaSize     *int            `json:"delta_size"`
	From          string          `json:"from"`
	To            string          `json:"to"`
	Sent          string          `json:"sent"`
	Peer          string          `json:"peer"`
	PeerVsn       int64           `json:"peer_vsn"`
	Vsn           int64           `json:"vsn"`
	Joins         json.RawMessage `json:"joins"`
	Leaves        json.RawMessage `json:"leaves"`
	Online        json.RawMessage `json:"online"`
	Context       json.RawMessage `json:"context"`
	Converged     *bool           `json:"converged"`
	Stopped       *string         `json:"stopped"`
}

type traceCase struct {
	id    int
	lines []traceLine
	nums  []int // line numbers in the file
}

func loadTraces(t *testing.T) (string, []traceCase) {
	path := os.Getenv("PRESENCE_REFERENCE_TRACES")
	if path == "" {
		path = "testdata/tracker-state.jsonl.gz"
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("reference traces: %v", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("reference traces: %v", err)
		}
		r = gz
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var out []traceCase
	n := 0
	for sc.Scan() {
		n++
		var l traceLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		if l.Op == "" {
			out = append(out, traceCase{id: l.Trace})
		}
		if len(out) == 0 {
			t.Fatalf("%s:%d: line before the first header", path, n)
		}
		c := &out[len(out)-1]
		c.lines = append(c.lines, l)
		c.nums = append(c.nums, n)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return path, out
}

// canonical JSON: objects with sorted keys.
func canon(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "invalid:" + string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func elemString(e *crdt.Element) string {
	return fmt.Sprintf(`[%q,%q,%q,%s,[%q,%d,%d]]`, e.Topic, e.Owner, e.Key, canon(e.Meta),
		e.Tag.Replica.Name, e.Tag.Replica.Vsn, e.Tag.Clock)
}

func elemsString(es []*crdt.Element) string {
	es = slices.Clone(es)
	crdt.SortElements(es)
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = elemString(e)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func expectedElems(raw json.RawMessage) string {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return "invalid"
	}
	es := make([]*crdt.Element, 0, len(items))
	for _, it := range items {
		var parts []json.RawMessage
		if json.Unmarshal(it, &parts) != nil || len(parts) != 5 {
			return "invalid element " + string(it)
		}
		var e crdt.Element
		var tag []json.RawMessage
		json.Unmarshal(parts[0], &e.Topic)
		json.Unmarshal(parts[1], &e.Owner)
		json.Unmarshal(parts[2], &e.Key)
		e.Meta = parts[3]
		json.Unmarshal(parts[4], &tag)
		if len(tag) != 3 {
			return "invalid tag " + string(it)
		}
		json.Unmarshal(tag[0], &e.Tag.Replica.Name)
		json.Unmarshal(tag[1], &e.Tag.Replica.Vsn)
		json.Unmarshal(tag[2], &e.Tag.Clock)
		es = append(es, &e)
	}
	return elemsString(es)
}

func clockString(c crdt.Clock) string {
	parts := []string{}
	for _, r := range c.Replicas() {
		parts = append(parts, fmt.Sprintf("[%q,%d,%d]", r.Name, r.Vsn, c[r]))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func expectedClock(raw json.RawMessage) string {
	var items [][3]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return "invalid"
	}
	c := crdt.Clock{}
	for _, it := range items {
		var r crdt.Replica
		var v uint64
		json.Unmarshal(it[0], &r.Name)
		json.Unmarshal(it[1], &r.Vsn)
		json.Unmarshal(it[2], &v)
		c[r] = v
	}
	return clockString(c)
}

type queued struct {
	id int
	hb *wire.Heartbeat
}

// traceReplayer drives one trace.
type traceReplayer struct {
	cfg    rawshard.Config
	nodes  map[string]*rawshard.Shard
	order  []string
	queues map[[2]string][]queued
}

func (r *traceReplayer) shard(name string) (*rawshard.Shard, error) {
	s := r.nodes[name]
	if s == nil {
		return nil, fmt.Errorf("unknown node %q", name)
	}
	return s, nil
}

func composed(s *rawshard.Shard) crdt.Diff {
	var d crdt.Diff
	for _, x := range s.Ready().Diffs {
		d = d.Then(x)
	}
	return d
}

// step replays one line; it returns a description of the first mismatch.
func (r *traceReplayer) step(l traceLine) (string, error) {
	var got crdt.Diff
	checkDiff := false
	switch l.Op {
	case "track", "update", "untrack", "untrack_owner":
		s, err := r.shard(l.Node)
		if err != nil {
			return "", err
		}
		switch l.Op {
		case "track":
			if _, err := s.Track(0, l.Owner, l.Topic, l.Key, l.Meta); err != nil {
				return "", err
			}
		case "update":
			if _, _, err := s.Update(0, l.Owner, l.Topic, l.Key, l.Meta); err != nil {
				return "", err
			}
		case "untrack":
			s.Untrack(0, l.Owner, l.Topic, l.Key)
		case "untrack_owner":
			s.UntrackOwner(0, l.Owner)
		}
		got, checkDiff = composed(s), true
	case "broadcast":
		s, err := r.shard(l.Node)
		if err != nil {
			return "", err
		}
		hb := s.Heartbeat()
		s.Ready()
		size := 0
		if hb.Delta != nil {
			size = hb.Delta.Size()
		}
		if l.DeltaSize != nil && *l.DeltaSize != size {
			return fmt.Sprintf("delta_size: expected %d, got %d", *l.DeltaSize, size), nil
		}
		for _, to := range r.order {
			if to != l.Node {
				k := [2]string{l.Node, to}
				r.queues[k] = append(r.queues[k], queued{l.Msg, hb})
			}
		}
	case "drop", "deliver":
		k := [2]string{l.From, l.To}
		q := r.queues[k]
		if len(q) == 0 {
			return "", fmt.Errorf("queue %s→%s is empty", l.From, l.To)
		}
		head := q[0]
		r.queues[k] = q[1:]
		if head.id != l.Msg {
			return fmt.Sprintf("head of %s→%s: expected msg %d, got %d", l.From, l.To, l.Msg, head.id), nil
		}
		if l.Op == "deliver" {
			s, err := r.shard(l.To)
			if err != nil {
				return "", err
			}
			s.Step(0, head.hb)
			got, checkDiff = composed(s), true
		}
	case "transfer":
		from, err := r.shard(l.From)
		if err != nil {
			return "", err
		}
		to, err := r.shard(l.To)
		if err != nil {
			return "", err
		}
		req := to.RequestTransfer(l.From)
		to.Ready()
		from.Step(0, req)
		out := from.Ready().Outbound
		if len(out) != 1 {
			return "", fmt.Errorf("transfer: %d messages out", len(out))
		}
		ack := out[0].Msg.(*wire.TransferAck)
		sent := "full"
		if ack.Delta != nil {
			sent = "delta"
		}
		if l.Sent != "" && l.Sent != sent {
			return fmt.Sprintf("sent: expected %s, got %s", l.Sent, sent), nil
		}
		to.Step(0, ack)
		got, checkDiff = composed(to), true
	case "down", "permdown", "graceful_permdown":
		s, err := r.shard(l.Node)
		if err != nil {
			return "", err
		}
		switch l.Op {
		case "down":
			s.PeerDown(l.Peer, l.PeerVsn)
		case "permdown":
			s.PeerPermdown(l.Peer, l.PeerVsn)
		default:
			s.Step(0, &wire.GracefulPermdown{From: crdt.Replica{Name: l.Peer, Vsn: l.PeerVsn}})
		}
		got, checkDiff = composed(s), true
	case "graceful_shutdown":
		s, err := r.shard(l.Node)
		if err != nil {
			return "", err
		}
		if s.Self().Vsn != l.Vsn {
			return fmt.Sprintf("graceful_shutdown: expected vsn %d, got %d", l.Vsn, s.Self().Vsn), nil
		}
		s.GracefulPermdown()
		s.Ready()
	case "restart":
		if _, err := r.shard(l.Node); err != nil {
			return "", err
		}
		r.nodes[l.Node] = rawshard.New(crdt.Replica{Name: l.Node, Vsn: l.Vsn}, r.cfg)
		for k := range r.queues {
			if k[0] == l.Node || k[1] == l.Node {
				delete(r.queues, k)
			}
		}
	case "check":
		s, err := r.shard(l.Node)
		if err != nil {
			return "", err
		}
		if s.Self().Vsn != l.Vsn {
			return fmt.Sprintf("check: expected vsn %d, got %d", l.Vsn, s.Self().Vsn), nil
		}
		if want, have := expectedElems(l.Online), elemsString(s.State().Online()); want != have {
			return fmt.Sprintf("online:\n expected %s\n got      %s", want, have), nil
		}
		if want, have := expectedClock(l.Context), clockString(s.State().Clocks()); want != have {
			return fmt.Sprintf("context:\n expected %s\n got      %s", want, have), nil
		}
	case "end":
		if l.Converged != nil && *l.Converged {
			var first string
			for i, n := range r.order {
				have := elemsString(r.nodes[n].State().Online())
				if i == 0 {
					first = have
				} else if have != first {
					return fmt.Sprintf("end: %s shows %s, %s shows %s", r.order[0], first, n, have), nil
				}
			}
		}
	default:
		return "", fmt.Errorf("unknown op %q", l.Op)
	}
	if checkDiff {
		if l.Joins != nil {
			if want, have := expectedElems(l.Joins), elemsString(got.Joins); want != have {
				return fmt.Sprintf("joins:\n expected %s\n got      %s", want, have), nil
			}
		}
		if l.Leaves != nil {
			if want, have := expectedElems(l.Leaves), elemsString(got.Leaves); want != have {
				return fmt.Sprintf("leaves:\n expected %s\n got      %s", want, have), nil
			}
		}
	}
	return "", nil
}

func TestReferenceTraces(t *testing.T) {
	path, cases := loadTraces(t)
	if len(cases) == 0 {
		t.Fatalf("%s: no traces", path)
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("trace-%d", c.id), func(t *testing.T) {
			h := c.lines[0]
			cfg := rawshard.DefaultConfig()
			cfg.MaxDeltaSizes = h.MaxDeltaSizes
			r := &traceReplayer{cfg: cfg, nodes: map[string]*rawshard.Shard{}, order: h.Nodes,
				queues: map[[2]string][]queued{}}
			for _, n := range h.Nodes {
				r.nodes[n] = rawshard.New(crdt.Replica{Name: n, Vsn: 1}, cfg)
			}
			for i, l := range c.lines[1:] {
				mismatch, err := r.step(l)
				if err != nil {
					t.Fatalf("trace %d, %s line %d (%s): %v", c.id, path, c.nums[i+1], l.Op, err)
				}
				if mismatch != "" {
					raw, _ := json.Marshal(l)
					t.Fatalf("trace %d, %s line %d (%s): %s\n line: %s", c.id, path, c.nums[i+1], l.Op, mismatch, bytes.TrimSpace(raw))
				}
			}
			if last := c.lines[len(c.lines)-1]; last.Op != "end" {
				t.Fatalf("trace %d: no end line", c.id)
			}
		})
	}
}
