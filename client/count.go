package client

import "encoding/json"

// OnCount calls f with the counts of every presence_count ch receives:
// what a member of a big room gets instead of the list when it joins
// presenced's channel with {"presence": {"mode": "count"}} next to its
// meta. The counts are absolute (the same ones may come twice). It
// returns the binding's id, for ch.Off("presence_count", id).
func OnCount(ch *Channel, f func(keys, metas int)) int {
	return ch.On("presence_count", func(payload json.RawMessage) {
		var c struct {
			Keys  int `json:"keys"`
			Metas int `json:"metas"`
		}
		if json.Unmarshal(payload, &c) == nil {
			f(c.Keys, c.Metas)
		}
	})
}
