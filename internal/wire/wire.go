// Package wire is the versioned binary encoding of the tracker's
// node-to-node messages: heartbeat (clocks and an optional delta),
// transfer_req, transfer_ack (a delta generation or a full state),
// graceful_permdown and stopping.
//
// Layout: a version byte (1), a kind byte, a table of the replicas the
// message names (each named once, then referred to by index), then the
// message's fields. Integers are unsigned varints; strings and metas are
// length-prefixed bytes; metas travel as opaque JSON. Decoding untrusted
// bytes never panics: every length and count is checked against what is
// left, and an error says what was wrong.
//
// Kinds are only ever added, never changed: a node that meets a kind it
// does not know (one added after it was built) gets ErrUnknownKind and
// drops the message, so new kinds must degrade to what an older node does
// without them (stopping degrades to the down period).
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gopresence/presence/internal/crdt"
)

// Version is the current encoding version (first byte of every message).
const Version = 1

const (
	kindHeartbeat = iota + 1
	kindTransferReq
	kindTransferAck
	kindGracefulPermdown
	kindStopping
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("wire: malformed message")

// ErrVersion is returned for a message of an unknown version.
var ErrVersion = errors.New("wire: unsupported version")

// ErrUnknownKind is returned (wrapping ErrMalformed) for a message of the
// current version whose kind this build does not know: most likely a kind
// added after it, sent by a newer node, which the receiver may drop
// without alarm.
var ErrUnknownKind = fmt.Errorf("%w: unknown kind", ErrMalformed)

type encoder struct {
	buf  []byte
	reps map[crdt.Replica]uint64
	list []crdt.Replica
}

func (e *encoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *encoder) bytes(b []byte)   { e.uvarint(uint64(len(b))); e.buf = append(e.buf, b...) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.buf = append(e.buf, s...) }

func (e *encoder) note(r crdt.Replica) {
	if _, ok := e.reps[r]; !ok {
		e.reps[r] = uint64(len(e.list))
		e.list = append(e.list, r)
	}
}

func (e *encoder) rep(r crdt.Replica) { e.uvarint(e.reps[r]) }

func (e *encoder) noteClock(c crdt.Clock) {
	for _, r := range c.Replicas() {
		e.note(r)
	}
}

func (e *encoder) noteClouds(c crdt.Clouds) {
	rs := make([]crdt.Replica, 0, len(c))
	for r := range c {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, crdt.Replica.Compare)
	for _, r := range rs {
		e.note(r)
	}
}

func (e *encoder) noteValues(v map[crdt.Dot]*crdt.Element) {
	for t := range v {
		e.note(t.Replica)
	}
}

func (e *encoder) clock(c crdt.Clock) {
	rs := c.Replicas()
	e.uvarint(uint64(len(rs)))
	for _, r := range rs {
		e.rep(r)
		e.uvarint(c[r])
	}
}

func (e *encoder) clouds(c crdt.Clouds) {
	rs := make([]crdt.Replica, 0, len(c))
	runs := make(map[crdt.Replica][][2]uint64, len(c))
	for r := range c {
		if rr := c.Runs(r); len(rr) > 0 {
			rs = append(rs, r)
			runs[r] = rr
		}
	}
	slices.SortFunc(rs, crdt.Replica.Compare)
	e.uvarint(uint64(len(rs)))
	for _, r := range rs {
		e.rep(r)
		e.uvarint(uint64(len(runs[r])))
		var prev uint64
		for i, run := range runs[r] {
			// runs ascend and are disjoint: the gap from the previous run's
			// end and the run's length-1 are small numbers
			if i == 0 {
				e.uvarint(run[0])
			} else {
				e.uvarint(run[0] - prev)
			}
			e.uvarint(run[1] - run[0])
			prev = run[1]
		}
	}
}

func (e *encoder) values(v map[crdt.Dot]*crdt.Element) {
	es := make([]*crdt.Element, 0, len(v))
	for _, x := range v {
		es = append(es, x)
	}
	crdt.SortElements(es) // deterministic bytes; topics group together
	e.uvarint(uint64(len(es)))
	for _, x := range es {
		e.rep(x.Tag.Replica)
		e.uvarint(x.Tag.Clock)
		e.str(x.Topic)
		e.str(x.Owner)
		e.str(x.Key)
		e.bytes(x.Meta)
	}
}

func (e *encoder) header(kind byte) {
	e.buf = append(e.buf, Version, kind)
	e.uvarint(uint64(len(e.list)))
	for _, r := range e.list {
		e.str(r.Name)
		e.buf = binary.AppendVarint(e.buf, r.Vsn)
	}
}

// Encode returns the bytes of m.
func Encode(m Message) ([]byte, error) {
	// First pass: collect replicas; second: write.
	e := &encoder{reps: map[crdt.Replica]uint64{}}
	switch m := m.(type) {
	case *Heartbeat:
		e.note(m.From)
		e.noteClock(m.Clocks)
		if m.Delta != nil {
			noteDelta(e, m.Delta)
		}
		e.header(kindHeartbeat)
		e.rep(m.From)
		e.clock(m.Clocks)
		if m.Delta == nil {
			e.buf = append(e.buf, 0)
		} else {
			e.buf = append(e.buf, 1)
			writeDelta(e, m.Delta)
		}
	case *TransferReq:
		e.note(m.From)
		e.noteClock(m.Clocks)
		e.header(kindTransferReq)
		e.uvarint(m.ID)
		e.rep(m.From)
		e.clock(m.Clocks)
	case *TransferAck:
		e.note(m.From)
		switch {
		case m.Delta != nil:
			noteDelta(e, m.Delta)
		case m.Extract != nil:
			e.noteClock(m.Extract.Context)
			e.noteClouds(m.Extract.Clouds)
			e.noteValues(m.Extract.Values)
		default:
			return nil, errors.New("wire: transfer_ack without payload")
		}
		e.header(kindTransferAck)
		e.uvarint(m.ID)
		e.rep(m.From)
		if m.Delta != nil {
			e.buf = append(e.buf, 1)
			writeDelta(e, m.Delta)
		} else {
			e.buf = append(e.buf, 2)
			e.clock(m.Extract.Context)
			e.clouds(m.Extract.Clouds)
			e.values(m.Extract.Values)
		}
	case *GracefulPermdown:
		e.note(m.From)
		e.header(kindGracefulPermdown)
		e.rep(m.From)
	case *Stopping:
		if m.Grace < 0 || m.Grace > MaxGrace {
			return nil, fmt.Errorf("wire: stopping grace %v out of range", m.Grace)
		}
		e.note(m.From)
		e.header(kindStopping)
		e.rep(m.From)
		e.uvarint(uint64((m.Grace + time.Millisecond - 1) / time.Millisecond)) // rounded up: never shorter
	default:
		return nil, fmt.Errorf("wire: unknown message %T", m)
	}
	return e.buf, nil
}

func noteDelta(e *encoder, d *crdt.Delta) {
	e.noteClock(d.Start)
	e.noteClock(d.End)
	e.noteClouds(d.Clouds)
	e.noteValues(d.Values)
}

func writeDelta(e *encoder, d *crdt.Delta) {
	e.clock(d.Start)
	e.clock(d.End)
	e.clouds(d.Clouds)
	e.values(d.Values)
}

type decoder struct {
	b    []byte
	err  error
	reps []crdt.Replica
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
}

func (d *decoder) byte1(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail(what + ": truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what + ": bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what + ": bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items each taking at least min bytes.
func (d *decoder) count(what string, min int) int {
	v := d.uvarint(what)
	if d.err != nil {
		return 0
	}
	if v > uint64(len(d.b)/min) {
		d.fail(what + ": count exceeds message")
		return 0
	}
	return int(v)
}

func (d *decoder) raw(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what + ": length exceeds message")
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) rep(what string) crdt.Replica {
	i := d.uvarint(what)
	if d.err != nil {
		return crdt.Replica{}
	}
	if i >= uint64(len(d.reps)) {
		d.fail(what + ": replica index out of range")
		return crdt.Replica{}
	}
	return d.reps[i]
}

func (d *decoder) clock(what string) crdt.Clock {
	n := d.count(what, 2)
	c := make(crdt.Clock, n)
	for range n {
		r := d.rep(what)
		v := d.uvarint(what)
		if d.err != nil {
			return nil
		}
		c[r] = v
	}
	return c
}

// maxDots bounds the dots one message may describe: runs make a huge
// cloud cheap to encode, not to process.
const maxDots = 1 << 26

func (d *decoder) clouds() crdt.Clouds {
	n := d.count("clouds", 2)
	c := crdt.Clouds{}
	total := uint64(0)
	for range n {
		r := d.rep("cloud replica")
		k := d.count("cloud runs", 2)
		var prev uint64
		for i := range k {
			gap := d.uvarint("run start")
			length := d.uvarint("run length")
			if d.err != nil {
				return nil
			}
			lo := gap
			if i > 0 {
				lo = prev + gap
				if gap == 0 || lo < prev {
					d.fail("runs not ascending")
					return nil
				}
			}
			hi := lo + length
			if hi < lo || length >= maxDots || total+length+1 > maxDots {
				d.fail("cloud too large")
				return nil
			}
			total += length + 1
			c.AddRun(r, lo, hi)
			prev = hi
		}
	}
	return c
}

func (d *decoder) values() map[crdt.Dot]*crdt.Element {
	n := d.count("values", 6)
	out := make(map[crdt.Dot]*crdt.Element, n)
	for range n {
		e := &crdt.Element{}
		e.Tag.Replica = d.rep("tag")
		e.Tag.Clock = d.uvarint("tag clock")
		e.Topic = string(d.raw("topic"))
		e.Owner = string(d.raw("owner"))
		e.Key = string(d.raw("key"))
		if m := d.raw("meta"); m != nil {
			e.Meta = slices.Clone(m)
		}
		if d.err != nil {
			return nil
		}
		out[e.Tag] = e
	}
	return out
}

func (d *decoder) delta() *crdt.Delta {
	x := &crdt.Delta{}
	x.Start = d.clock("start")
	x.End = d.clock("end")
	x.Clouds = d.clouds()
	x.Values = d.values()
	return x
}

// Decode parses a message. The result does not alias b.
func Decode(b []byte) (Message, error) {
	d := &decoder{b: b}
	v := d.byte1("version")
	if d.err != nil {
		return nil, d.err
	}
	if v != Version {
		return nil, fmt.Errorf("%w: %d", ErrVersion, v)
	}
	kind := d.byte1("kind")
	n := d.count("replicas", 2)
	for range n {
		name := string(d.raw("replica name"))
		vsn := d.varint("replica vsn")
		if d.err != nil {
			return nil, d.err
		}
		d.reps = append(d.reps, crdt.Replica{Name: name, Vsn: vsn})
	}
	var m Message
	switch kind {
	case kindHeartbeat:
		hb := &Heartbeat{From: d.rep("from"), Clocks: d.clock("clocks")}
		switch d.byte1("delta flag") {
		case 0:
		case 1:
			hb.Delta = d.delta()
		default:
			d.fail("delta flag")
		}
		m = hb
	case kindTransferReq:
		m = &TransferReq{ID: d.uvarint("id"), From: d.rep("from"), Clocks: d.clock("clocks")}
	case kindTransferAck:
		ack := &TransferAck{ID: d.uvarint("id"), From: d.rep("from")}
		switch d.byte1("payload kind") {
		case 1:
			ack.Delta = d.delta()
		case 2:
			ack.Extract = &crdt.Extract{Context: d.clock("context"), Clouds: d.clouds(), Values: d.values()}
		default:
			d.fail("payload kind")
		}
		m = ack
	case kindGracefulPermdown:
		m = &GracefulPermdown{From: d.rep("from")}
	case kindStopping:
		st := &Stopping{From: d.rep("from")}
		ms := d.uvarint("grace")
		if ms > uint64(MaxGrace/time.Millisecond) {
			d.fail("grace out of range")
		}
		st.Grace = time.Duration(ms) * time.Millisecond
		m = st
	default:
		if d.err == nil {
			return nil, fmt.Errorf("%w %d", ErrUnknownKind, kind)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return m, nil
}
