package phxframe

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestScan(t *testing.T) {
	e, err := Scan([]byte(` ["1", null, "room:a\"b", "phx_reply", {"status":"ok"} ] `))
	if err != nil || string(Content(e.JoinRef)) != "1" || e.Ref == nil || Content(e.Ref) != nil ||
		string(Content(e.Topic)) != `room:a\"b` || string(e.Event) != `"phx_reply"` || string(e.Payload) != ` {"status":"ok"} ` {
		t.Fatalf("Scan = %q, %v", e, err)
	}
	for _, bad := range []string{``, `{}`, `[1,null,"t","e",{}]`, `["1","2","t","e"]`, `["1","2","t","e",]`, `["1","2","t","e",{}`, `["1" "2","t","e",{}]`} {
		if _, err := Scan([]byte(bad)); err == nil {
			t.Errorf("Scan(%q) succeeded", bad)
		}
	}
	if b := Append(nil, "", "r", "room:<x>", "ev", []byte(`{"a":1}`)); string(b) != `[null,"r","room:\u003cx\u003e","ev",{"a":1}]` {
		t.Fatalf("Append = %s", b)
	}
	if b := AppendRaw(nil, nil, []byte(`7`), "t", "e", []byte(`{}`)); string(b) != `[null,7,"t","e",{}]` {
		t.Fatalf("AppendRaw = %s", b)
	}
}

// FuzzScan checks Scan against encoding/json: a valid array of five whose
// first four elements are strings or null scans, to the elements
// json.Unmarshal finds; whatever Scan accepts of a valid text has those
// elements first. And Append writes what Scan and encoding/json read back.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		`[null,"1","room:a","phx_reply",{"status":"ok","response":{}}]`, ` [ "1" , "2" , "t" , "e" , [1] ] `,
		`["\u0031",null,"a\"b","e\\",{}]`, `["1","2","t","e",{},6]`, `[null,null,null,null,null]`, `["1","2","t","e"]`, `[`,
	} {
		f.Add([]byte(s), "1", "2", "room:a", "phx_join")
	}
	f.Fuzz(func(t *testing.T, b []byte, joinRef, ref, topic, event string) {
		e, err := Scan(b)
		if json.Valid(b) {
			var arr []json.RawMessage
			if json.Unmarshal(b, &arr) == nil && len(arr) == 5 && strOrNull(arr[0]) && strOrNull(arr[1]) && strOrNull(arr[2]) && strOrNull(arr[3]) {
				if err != nil {
					t.Fatalf("Scan(%q): %v; encoding/json reads a frame", b, err)
				}
				if !bytes.Equal(bytes.TrimSpace(e.Payload), bytes.TrimSpace(arr[4])) {
					t.Fatalf("Scan(%q).Payload = %q, encoding/json: %q", b, e.Payload, arr[4])
				}
			}
			if err == nil {
				if len(arr) < 5 {
					t.Fatalf("Scan(%q) accepts an array of %d", b, len(arr))
				}
				for k, tok := range [4][]byte{e.JoinRef, e.Ref, e.Topic, e.Event} {
					if !bytes.Equal(tok, bytes.TrimSpace(arr[k])) {
						t.Fatalf("Scan(%q): element %d = %q, encoding/json: %q", b, k, tok, arr[k])
					}
				}
			}
		}

		payload := []byte(`{"k":[1,"v"]}`)
		out := Append(nil, joinRef, ref, topic, event, payload)
		var arr []any
		if err := json.Unmarshal(out, &arr); err != nil || len(arr) != 5 {
			t.Fatalf("Append = %s: %v", out, err)
		}
		if e, err = Scan(out); err != nil || !bytes.Equal(e.Payload, payload) {
			t.Fatalf("Scan(Append) = %q, %v", e, err)
		}
		for k, want := range []string{joinRef, ref, topic, event} {
			got, _ := arr[k].(string)
			if k < 2 && want == "" {
				if arr[k] != nil {
					t.Fatalf("Append: ref %d = %v, want null", k, arr[k])
				}
				continue
			}
			if w, _ := json.Marshal(want); string(w) != string([][]byte{e.JoinRef, e.Ref, e.Topic, e.Event}[k]) {
				t.Fatalf("Append: element %d = %s, encoding/json: %s (%q)", k, [][]byte{e.JoinRef, e.Ref, e.Topic, e.Event}[k], w, got)
			}
		}
	})
}

func strOrNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && (raw[0] == '"' || string(raw) == "null")
}
