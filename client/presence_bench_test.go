package client

import (
	"encoding/json"
	"fmt"
	"testing"
)

// A diff costs the keys it touches, not the size of the state: Presence
// applies it in place (phoenix.js copies the whole state for every diff,
// which makes a 20k-member room quadratic). The ns/op of the two sizes
// stay close.
func BenchmarkPresenceDiff(b *testing.B) {
	for _, n := range []int{1_000, 20_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var st State
			raw := []byte(`{`)
			for i := range n {
				if i > 0 {
					raw = append(raw, ',')
				}
				raw = fmt.Appendf(raw, `"u%d":{"metas":[{"phx_ref":"r%d","status":"online"}]}`, i, i)
			}
			raw = append(raw, '}')
			if err := json.Unmarshal(raw, &st); err != nil {
				b.Fatal(err)
			}
			p := &Presence{state: st}
			diffs := make([]Diff, 64)
			for i := range diffs {
				k := fmt.Sprint("u", i)
				json.Unmarshal(fmt.Appendf(nil, `{"joins":{%q:{"metas":[{"phx_ref":"n%d","phx_ref_prev":"r%d","status":"away"}]}},`+
					`"leaves":{%q:{"metas":[{"phx_ref":"r%d"}]}}}`, k, i, i, k, i), &diffs[i])
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				applyDiff(p.state, diffs[i%len(diffs)], nil, nil)
			}
		})
	}
}
