package tracker

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sync/atomic"
)

// ErrInvalidMeta is returned when a meta is not a JSON object.
var ErrInvalidMeta = errors.New("tracker: meta must be a JSON object")

// refs makes the phx_refs of one tracker: a prefix of the node's name and
// incarnation, so that refs of different nodes (or of one node's
// incarnations) never collide, and a counter.
type refs struct {
	prefix [4]byte
	seq    atomic.Uint64
}

func newRefs(node string, vsn int64) *refs {
	r := &refs{}
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", node, vsn)
	binary.BigEndian.PutUint32(r.prefix[:], h.Sum32())
	return r
}

// next returns a new phx_ref.
func (r *refs) next() string {
	var b [12]byte
	copy(b[:4], r.prefix[:])
	binary.BigEndian.PutUint64(b[4:], r.seq.Add(1))
	return base64.URLEncoding.EncodeToString(b[:])
}

// withRefs returns meta with "phx_ref" (and "phx_ref_prev" when prev is
// set) put first, replacing any the caller gave.
func withRefs(meta []byte, ref, prev string) ([]byte, error) {
	meta = bytes.TrimSpace(meta)
	if len(meta) == 0 {
		meta = []byte("{}")
	}
	if meta[0] != '{' {
		return nil, ErrInvalidMeta
	}
	if bytes.ContainsAny(meta, " \t\r\n") {
		// Kept compact: smaller, and written as is into presence_state
		// and presence_diff frames.
		var c bytes.Buffer
		if err := json.Compact(&c, meta); err != nil {
			return nil, ErrInvalidMeta
		}
		meta = c.Bytes()
	} else if !json.Valid(meta) {
		return nil, ErrInvalidMeta
	}
	// Decoding is skipped only when no key can be a ref: a key spelled
	// with escapes ("phx\u005fref") names the same key once decoded, by
	// us or by a client, so any backslash takes the decoding path too.
	if bytes.Contains(meta, []byte(`phx_ref`)) || bytes.IndexByte(meta, '\\') >= 0 {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(meta, &m); err != nil {
			return nil, ErrInvalidMeta
		}
		delete(m, "phx_ref")
		delete(m, "phx_ref_prev")
		meta, _ = json.Marshal(m)
	}
	rest := bytes.TrimSpace(meta[1:])
	n := len(`{"phx_ref":""`) + len(ref) + 1 + len(rest)
	if prev != "" {
		n += len(`,"phx_ref_prev":""`) + len(prev)
	}
	out := make([]byte, 0, n) // exact: metas are kept for the presence's life
	out = append(out, `{"phx_ref":"`...)
	out = append(out, ref...)
	out = append(out, '"')
	if prev != "" {
		out = append(out, `,"phx_ref_prev":"`...)
		out = append(out, prev...)
		out = append(out, '"')
	}
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...), nil
}

// RefOf returns the phx_ref of a meta made by the tracker.
func RefOf(meta []byte) string {
	const p = `{"phx_ref":"`
	if !bytes.HasPrefix(meta, []byte(p)) {
		return ""
	}
	rest := meta[len(p):]
	if i := bytes.IndexByte(rest, '"'); i >= 0 {
		return string(rest[:i])
	}
	return ""
}
