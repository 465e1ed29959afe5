package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gopresence/presence/internal/jsonscan"
	"github.com/gopresence/presence/internal/phxframe"
)

// The room mode: every client joins one topic with a meta, at a paced
// rate, and keeps its own copy of the topic's presences the way
// phoenix.js's Presence does; the run ends when every copy holds every
// client (or at the timeout).
//
// Each client may receive thousands of presence_diff frames and one
// presence_state of up to N metas, so nothing here decodes JSON into
// values: a small scanner walks the payloads and keeps only the keys and
// the phx_refs.

// Presence modes of the room mode.
const (
	PresenceFull  = "full"  // presence_state + presence_diff, a copy of the state per client
	PresenceCount = "count" // join with "presence": {"mode": "count"}, expect presence_count
)

// roomClient is a room client's state. sent is guarded by client.mu (the
// pacer writes it); the rest belongs to the client's reader.
type roomClient struct {
	sent    int64 // unix nanos of the join's send
	replied bool
	ok      bool
	replyAt int64 // arrival of the join's reply

	view roomView
	// Count mode: the last presence_count.
	gotCount              bool
	countKeys, countMetas int64
	complete              bool
	completeAt            int64 // arrival of the frame that completed the view
	completeReadAt        int64 // its read
	diffFrames            int64
	diffBytes             int64
	stateFrames           int64
	stateBytes            int64
	countFrames           int64
	countBytes            int64
	updates               secBuckets // presence_diff and presence_count frames per second
	parseErrs, chanErrs   int
}

// roomView is one client's copy of a topic's presences, kept as
// phoenix.js's Presence keeps it: presence_state replaces it; diffs that
// come before the first presence_state wait for it and are applied after
// it; a diff applies its joins (a meta is added, or replaces the one with
// its phx_ref), then its leaves (the metas with their phx_refs go; a key
// without metas is gone).
//
// Only the keys and the phx_refs are kept, a phx_ref as a 32-bit hash
// (two different refs of one key mistaken for each other: p = 2⁻³² per
// comparison). Keys u<i> with i < n, the load's own, are slots of a slice
// (4 bytes per key and client: 1.4 GB for 19k clients of 19k keys); other
// keys go to a map.
type roomView struct {
	n     int
	refs  []uint32            // u<i> → its first meta's ref hash, 0: no meta
	more  map[int32][]uint32  // u<i> → its further metas
	other map[string][]uint32 // other keys → their metas
	keys  int                 // u<i> keys holding a meta

	synced  bool     // a presence_state came
	pending [][]byte // diffs that came before it

	// What phoenix.js's onLeave would report of the u<i> keys since the
	// last presence_state: gone keys (every meta left), and flaps (a gone
	// key that joined again).
	gone         []bool
	lefts, flaps int

	// stale: refs that must be gone for the view to be exact (the
	// deploy's metas of the stopped node); staleN: how many it holds.
	stale  map[uint32]bool
	staleN int
}

// state applies a presence_state payload.
func (v *roomView) state(p []byte) error {
	v.reset()
	err := v.apply(p, true)
	v.synced = true
	for _, d := range v.pending {
		if e := v.applyDiff(d); err == nil {
			err = e
		}
	}
	v.pending = nil
	return err
}

// diff applies a presence_diff payload, or queues it before the first
// presence_state.
func (v *roomView) diff(p []byte) error {
	if !v.synced {
		v.pending = append(v.pending, bytes.Clone(p))
		return nil
	}
	return v.applyDiff(p)
}

func (v *roomView) reset() {
	clear(v.refs)
	clear(v.gone)
	v.more, v.other, v.keys, v.staleN = nil, nil, 0, 0
}

// markStale sets the refs that must leave and counts those it holds.
func (v *roomView) markStale(set map[uint32]bool) {
	v.stale, v.staleN = set, 0
	for _, r := range v.refs {
		if r != 0 && set[r] {
			v.staleN++
		}
	}
	for _, m := range v.more {
		for _, r := range m {
			if set[r] {
				v.staleN++
			}
		}
	}
}

// added and removed keep staleN.
func (v *roomView) added(r uint32) {
	if v.stale != nil && v.stale[r] {
		v.staleN++
	}
}

func (v *roomView) removed(r uint32) {
	if v.stale != nil && v.stale[r] {
		v.staleN--
	}
}

// complete reports whether the view holds every key u0 … u<n-1>.
func (v *roomView) complete() bool { return v.synced && v.keys == v.n }

// metas returns the ref hashes of key's metas (tests).
func (v *roomView) metas(key string) []uint32 {
	if k, ok := keyIndex([]byte(key), v.n); ok {
		if v.refs == nil || v.refs[k] == 0 {
			return nil
		}
		return append([]uint32{v.refs[k]}, v.more[int32(k)]...)
	}
	return v.other[key]
}

// len is the number of keys with metas.
func (v *roomView) len() int { return v.keys + len(v.other) }

func (v *roomView) applyDiff(p []byte) error {
	var joins, leaves []byte
	if _, err := jsonscan.EachField(p, 0, func(name []byte, i int) (int, error) {
		j, err := jsonscan.SkipValue(p, i)
		switch string(name) {
		case "joins":
			joins = p[i:j]
		case "leaves":
			leaves = p[i:j]
		}
		return j, err
	}); err != nil {
		return err
	}
	if joins == nil && leaves == nil {
		return errors.New("loadtest: presence_diff without joins or leaves")
	}
	if joins != nil {
		if err := v.apply(joins, true); err != nil {
			return err
		}
	}
	if leaves != nil {
		return v.apply(leaves, false)
	}
	return nil
}

// apply joins (or leaves) every meta of a presence map
// {key: {"metas": [{…, "phx_ref": ref}, …], …}, …}.
func (v *roomView) apply(p []byte, join bool) error {
	_, err := jsonscan.EachField(p, 0, func(key []byte, i int) (int, error) {
		return jsonscan.EachField(p, i, func(name []byte, i int) (int, error) {
			if string(name) != "metas" {
				return jsonscan.SkipValue(p, i)
			}
			return jsonscan.EachElem(p, i, func(i int) (int, error) {
				ref, j, err := metaRef(p, i)
				if err != nil {
					return j, err
				}
				if join {
					v.join(key, ref)
				} else {
					v.leave(key, ref)
				}
				return j, nil
			})
		})
	})
	return err
}

func (v *roomView) join(key []byte, r uint32) {
	k, ok := keyIndex(key, v.n)
	if !ok {
		if v.other == nil {
			v.other = map[string][]uint32{}
		}
		if m := v.other[string(key)]; !slices.Contains(m, r) {
			v.other[string(key)] = append(m, r)
		}
		return
	}
	if v.refs == nil {
		v.refs = make([]uint32, v.n)
	}
	switch cur := v.refs[k]; {
	case cur == 0:
		v.refs[k] = r
		v.keys++
		v.added(r)
		if v.gone != nil && v.gone[k] {
			v.gone[k] = false
			v.flaps++
		}
	case cur == r:
	default:
		if m := v.more[int32(k)]; !slices.Contains(m, r) {
			if v.more == nil {
				v.more = map[int32][]uint32{}
			}
			v.more[int32(k)] = append(m, r)
			v.added(r)
		}
	}
}

func (v *roomView) leave(key []byte, r uint32) {
	k, ok := keyIndex(key, v.n)
	if !ok {
		m, ok := v.other[string(key)]
		if i := slices.Index(m, r); ok && i >= 0 {
			if m = slices.Delete(m, i, i+1); len(m) == 0 {
				delete(v.other, string(key))
			} else {
				v.other[string(key)] = m
			}
		}
		return
	}
	if v.refs == nil || v.refs[k] == 0 {
		return
	}
	m := v.more[int32(k)]
	if v.refs[k] == r {
		v.removed(r)
		if len(m) == 0 {
			v.refs[k] = 0
			v.keys--
			if v.gone == nil {
				v.gone = make([]bool, v.n)
			}
			v.gone[k] = true
			v.lefts++
			return
		}
		v.refs[k] = m[len(m)-1]
		m = m[:len(m)-1]
	} else if i := slices.Index(m, r); i >= 0 {
		m = slices.Delete(m, i, i+1)
		v.removed(r)
	} else {
		return
	}
	if len(m) == 0 {
		delete(v.more, int32(k))
	} else {
		v.more[int32(k)] = m
	}
}

// keyIndex parses the load's own keys, u<i> with 0 ≤ i < n.
func keyIndex(key []byte, n int) (int, bool) {
	if len(key) < 2 || len(key) > 10 || key[0] != 'u' || key[1] == '0' && len(key) > 2 {
		return 0, false
	}
	k := 0
	for _, c := range key[1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		k = k*10 + int(c-'0')
	}
	return k, k < n
}

// refHash is FNV-1a of a phx_ref (as it stands in the JSON), never 0.
func refHash(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	if h == 0 {
		h = 1
	}
	return h
}

// metaRef returns the hash of the phx_ref of the meta object at p[i:]
// (of "" if it has none) and the index after it.
func metaRef(p []byte, i int) (uint32, int, error) {
	ref := refHash(nil)
	j, err := jsonscan.EachField(p, i, func(name []byte, i int) (int, error) {
		if string(name) != "phx_ref" {
			return jsonscan.SkipValue(p, i)
		}
		s, j, err := jsonscan.RawStringOrNull(p, i)
		if err == nil && s == nil {
			err = errors.New("loadtest: phx_ref is null")
		}
		ref = refHash(s)
		return j, err
	})
	return ref, j, err
}

// parseCount reads a presence_count payload {"keys": K, "metas": M}.
func parseCount(p []byte) (keys, metas int64, err error) {
	found := 0
	_, err = jsonscan.EachField(p, 0, func(name []byte, i int) (int, error) {
		var dst *int64
		switch string(name) {
		case "keys":
			dst = &keys
		case "metas":
			dst = &metas
		default:
			return jsonscan.SkipValue(p, i)
		}
		j := i
		for j < len(p) && p[j] >= '0' && p[j] <= '9' {
			*dst = *dst*10 + int64(p[j]-'0')
			j++
		}
		if j == i || j-i > 18 {
			return j, errors.New("loadtest: presence_count: not a count")
		}
		found++
		return j, nil
	})
	if err == nil && found != 2 {
		err = errors.New("loadtest: presence_count without keys and metas")
	}
	return keys, metas, err
}

// Frames per second ----------------------------------------------------------

// maxBuckets bounds a client's per-second counts (one hour).
const maxBuckets = 3600

// secBuckets counts one client's frames per second of the wave: element s
// counts those that arrived in [start + s, start + s + 1 s).
type secBuckets []int32

func (b *secBuckets) add(at, start int64) {
	s := max(0, min((at-start)/int64(time.Second), maxBuckets-1))
	for int64(len(*b)) <= s {
		*b = append(*b, 0)
	}
	(*b)[s]++
}

// BucketSummary sums per-second counts over clients.
type BucketSummary struct {
	// Max is the most frames one client received in one second; MaxAt the
	// first second (from the start of the wave) where one did.
	Max   int32 `json:"max_per_client_per_s"`
	MaxAt int   `json:"max_second"`
	// PerSecond: the frames all clients received, each second.
	PerSecond []int64 `json:"per_second"`
}

// add counts one client's buckets.
func (s *BucketSummary) add(b secBuckets) {
	for i, n := range b {
		if i >= len(s.PerSecond) {
			s.PerSecond = append(s.PerSecond, make([]int64, i+1-len(s.PerSecond))...)
		}
		s.PerSecond[i] += int64(n)
		if n > s.Max || n == s.Max && n > 0 && i < s.MaxAt {
			s.Max, s.MaxAt = n, i
		}
	}
}

// merge adds another summary (of other clients).
func (s *BucketSummary) merge(o BucketSummary) {
	for i, n := range o.PerSecond {
		if i >= len(s.PerSecond) {
			s.PerSecond = append(s.PerSecond, make([]int64, i+1-len(s.PerSecond))...)
		}
		s.PerSecond[i] += n
	}
	if o.Max > s.Max || o.Max == s.Max && o.Max > 0 && o.MaxAt < s.MaxAt {
		s.Max, s.MaxAt = o.Max, o.MaxAt
	}
}

// Worker side ------------------------------------------------------------------

// RoomProgress is a worker's progress during the wave.
type RoomProgress struct {
	Live     int `json:"live"` // connected clients
	Sent     int `json:"sent"`
	Replied  int `json:"replied"`
	OK       int `json:"ok"`
	Complete int `json:"complete"` // views complete now
}

// RoomResult is what a worker measured in the room mode; the per-client
// slices have one element per connected client.
type RoomResult struct {
	Sent       int            `json:"sent"`
	OK         int            `json:"ok"`
	Refused    int            `json:"refused"`
	Reasons    map[string]int `json:"reasons,omitempty"`
	Unanswered int            `json:"unanswered"`
	SendErrs   int            `json:"send_errs"`
	LastSend   int64          `json:"last_send"`  // unix nanos
	LastReply  int64          `json:"last_reply"` // unix nanos (arrival)
	JoinLat    []int32        `json:"join_lat"`   // µs, send → arrival of the ok reply
	// CompleteAt: the arrival (CompleteReadAt: the read) of the frame that
	// completed the client's view, 0 if it was not complete at the end.
	CompleteAt     []int64 `json:"complete_at"`
	CompleteReadAt []int64 `json:"complete_read_at"`
	// Keys: the keys the view held at the end (count mode: the last
	// presence_count's keys).
	Keys        []int64       `json:"keys"`
	DiffFrames  []int64       `json:"diff_frames"`
	DiffBytes   []int64       `json:"diff_bytes"`
	StateFrames []int64       `json:"state_frames"`
	StateBytes  []int64       `json:"state_bytes"`
	CountFrames []int64       `json:"count_frames"`
	CountBytes  []int64       `json:"count_bytes"`
	Updates     BucketSummary `json:"updates"`
	ParseErrs   int           `json:"parse_errs"`
	ChanErrs    int           `json:"chan_errs"`
}

// roomPayload is client i's join payload.
func (w *worker) roomPayload(i int) []byte {
	b := fmt.Appendf(nil, `{"meta":{"status":"online","n":%d`, i)
	if w.job.MetaPad > 0 {
		b = fmt.Appendf(b, `,"pad":%q`, strings.Repeat("x", w.job.MetaPad))
	}
	b = append(b, '}')
	if w.job.PresenceMode == PresenceCount {
		b = append(b, `,"presence":{"mode":"count"}`...)
	}
	return append(b, '}')
}

// sendRoomJoin sends c's join of the topic.
func (w *worker) sendRoomJoin(c *client, buf []byte) []byte {
	buf = phxframe.Append(buf, "1", "1", w.job.Topic, "phx_join", w.roomPayload(c.idx))
	c.mu.Lock()
	c.room.sent = time.Now().UnixNano()
	err := c.conn.WriteText(buf)
	c.mu.Unlock()
	w.roomSent.Add(1)
	if err != nil {
		w.roomSendErrs.Add(1)
		w.noteErr(err)
	}
	return buf
}

// handleRoom records one message of a room client.
func (w *worker) handleRoom(c *client, data []byte, arrived, now int64) {
	r := c.room
	f, err := phxframe.Scan(data)
	if err != nil {
		r.parseErrs++
		return
	}
	if string(phxframe.Content(f.Topic)) != w.job.Topic {
		return // heartbeat replies
	}
	full := w.job.PresenceMode != PresenceCount
	switch string(phxframe.Content(f.Event)) {
	case "phx_reply":
		if string(phxframe.Content(f.Ref)) != "1" || r.replied {
			return
		}
		c.mu.Lock()
		sent := r.sent
		c.mu.Unlock()
		r.replied, r.replyAt = true, arrived
		w.roomReplied.Add(1)
		if st := ReplyStatus(f.Payload); st == "ok" {
			r.ok = true
			w.roomOK.Add(1)
			w.roomLat(c, sent, arrived)
		} else {
			w.roomRefused(c, f.Payload)
		}
	case "presence_state":
		r.stateFrames++
		r.stateBytes += int64(len(data))
		if full {
			if err := r.view.state(f.Payload); err != nil {
				r.parseErrs++
			}
		}
	case "presence_diff":
		r.diffFrames++
		r.diffBytes += int64(len(data))
		r.updates.add(arrived, w.start.Load())
		if full {
			if err := r.view.diff(f.Payload); err != nil {
				r.parseErrs++
			}
		}
	case "presence_count":
		r.countFrames++
		r.countBytes += int64(len(data))
		r.updates.add(arrived, w.start.Load())
		if k, m, err := parseCount(f.Payload); err != nil {
			r.parseErrs++
		} else {
			r.gotCount, r.countKeys, r.countMetas = true, k, m
		}
	case "phx_error", "phx_close":
		r.chanErrs++
		return
	default:
		return
	}
	n := int64(w.job.Total)
	done := r.view.complete()
	if !full {
		done = r.gotCount && r.countKeys == n && r.countMetas == n
	}
	switch {
	case done && !r.complete:
		r.complete, r.completeAt, r.completeReadAt = true, arrived, now
		w.roomComplete.Add(1)
	case !done && r.complete:
		r.complete = false
		w.roomComplete.Add(-1)
	}
}

// roomLat records an ok join's latency (reader only: the client's own
// slices live in the worker's per-client records).
func (w *worker) roomLat(c *client, sent, arrived int64) {
	c.joinLat = append(c.joinLat, int32(max(0, min((arrived-sent)/1000, 1<<31-1))))
}

func (w *worker) roomRefused(c *client, payload []byte) {
	if c.reasons == nil {
		c.reasons = map[string]int{}
	}
	c.reasons[refusalReason(payload)]++
}

// refusalReason is the reason of an error reply ("?" when it has none).
func refusalReason(payload []byte) string {
	if i := indexBytes(payload, []byte(`"reason":"`)); i >= 0 {
		s := payload[i+len(`"reason":"`):]
		if e := indexBytes(s, []byte(`"`)); e >= 0 {
			return string(s[:e])
		}
	}
	return "?"
}

// roomProgress is the worker's progress message.
func (w *worker) roomProgress() *RoomProgress {
	return &RoomProgress{Live: int(w.roomLive.Load()), Sent: int(w.roomSent.Load()), Replied: int(w.roomReplied.Load()),
		OK: int(w.roomOK.Load()), Complete: int(w.roomComplete.Load())}
}

// roomResult collects the clients' records (after their readers ended).
func (w *worker) roomResult() *RoomResult {
	res := &RoomResult{Sent: int(w.roomSent.Load()), SendErrs: int(w.roomSendErrs.Load())}
	for _, c := range w.clients {
		if c == nil {
			continue
		}
		r := c.room
		if r.sent > 0 {
			res.LastSend = max(res.LastSend, r.sent)
			if !r.replied {
				res.Unanswered++
			}
		}
		if r.replied {
			res.LastReply = max(res.LastReply, r.replyAt)
			if r.ok {
				res.OK++
			} else {
				res.Refused++
			}
		}
		addCounts(&res.Reasons, c.reasons)
		res.JoinLat = append(res.JoinLat, c.joinLat...)
		at, readAt := int64(0), int64(0)
		if r.complete {
			at, readAt = r.completeAt, r.completeReadAt
		}
		res.CompleteAt = append(res.CompleteAt, at)
		res.CompleteReadAt = append(res.CompleteReadAt, readAt)
		keys := int64(r.view.keys)
		if w.job.PresenceMode == PresenceCount {
			keys = r.countKeys
		}
		res.Keys = append(res.Keys, keys)
		res.DiffFrames = append(res.DiffFrames, r.diffFrames)
		res.DiffBytes = append(res.DiffBytes, r.diffBytes)
		res.StateFrames = append(res.StateFrames, r.stateFrames)
		res.StateBytes = append(res.StateBytes, r.stateBytes)
		res.CountFrames = append(res.CountFrames, r.countFrames)
		res.CountBytes = append(res.CountBytes, r.countBytes)
		res.Updates.add(r.updates)
		res.ParseErrs += r.parseErrs
		res.ChanErrs += r.chanErrs
	}
	return res
}
