package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

var seeds = []string{
	``, ` `, `null`, `true`, `-1.5e3`, `"a\"b\\"`, `"\u00e9"`, `{}`, `[]`, ` { "a" : 1 , "b":[1,{"c":null}] } `,
	`{"phx_ref":"F1x","name":"ann"}`, `{"keys":3,"metas":4}`, `[null,"1","room:a","phx_reply",{"status":"ok","response":{}}]`,
	`{"a\u0062":"]"}`, `{"a":1,"a":2}`, `[[[[]]]]`, `{"a":}`, `[1,]`, `{"a" 1}`, `"unterminated`, `{]`, `tru`, `[1 2]`,
}

func TestSkipValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int // -1 for an error
	}{
		{`1`, 1}, {` 12 ,`, 3}, {`"a\"b"x`, 6}, {`{"a":[1,"]"]}x`, 13}, {`[`, -1}, {`{]`, -1}, {`,`, -1}, {``, -1},
	} {
		j, err := SkipValue([]byte(tc.in), 0)
		if tc.want < 0 {
			if err == nil || !errors.Is(err, ErrSyntax) {
				t.Errorf("SkipValue(%q) = %d, %v; want an ErrSyntax", tc.in, j, err)
			}
			continue
		}
		if err != nil || j != tc.want {
			t.Errorf("SkipValue(%q) = %d, %v; want %d", tc.in, j, err, tc.want)
		}
	}
}

func TestEachField(t *testing.T) {
	b := []byte(` {"a" : 1, "b\"": {"x":[2]} , "c":"s"} `)
	var names []string
	end, err := EachField(b, 0, func(name []byte, i int) (int, error) {
		names = append(names, string(name))
		return SkipValue(b, i)
	})
	if err != nil || end != len(b)-1 || len(names) != 3 || names[1] != `b\"` {
		t.Fatalf("EachField = %d, %v, %q", end, err, names)
	}
}

// FuzzScan checks the scanner against encoding/json: a valid JSON text
// scans whole, and the fields, elements and strings it finds are those
// json.Unmarshal finds. An invalid text may scan (the scanner is lenient,
// see the package doc) but never makes it panic or point outside b.
func FuzzScan(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := SkipValue(b, 0)
		if j < 0 || j > len(b) {
			t.Fatalf("SkipValue(%q) = %d, outside b", b, j)
		}
		if !json.Valid(b) {
			scanAll(b) // must not panic
			return
		}
		if errors.Is(err, errDeep) {
			return
		}
		if err != nil || SkipSpace(b, j) != len(b) {
			t.Fatalf("SkipValue(%q) = %d, %v; encoding/json accepts it whole", b, j, err)
		}
		v := TrimSpace(b)
		switch v[0] {
		case '{':
			checkObject(t, b)
		case '[':
			checkArray(t, b)
		case '"':
			raw, end, err := RawStringOrNull(v, 0)
			if err != nil || end != len(v) {
				t.Fatalf("RawStringOrNull(%q) = %d, %v", v, end, err)
			}
			if got, want := unquote(t, raw), unmarshalString(t, v); got != want {
				t.Fatalf("RawStringOrNull(%q) = %q, encoding/json: %q", v, got, want)
			}
		case 'n':
			if raw, end, err := RawStringOrNull(v, 0); raw != nil || end != 4 || err != nil {
				t.Fatalf("RawStringOrNull(null) = %q, %d, %v", raw, end, err)
			}
		}
	})
}

func checkObject(t *testing.T, b []byte) {
	var want map[string]json.RawMessage
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	got := map[string][]byte{}
	end, err := EachField(b, 0, func(name []byte, i int) (int, error) {
		j, err := SkipValue(b, i)
		if err == nil {
			got[unquote(t, name)] = b[i:j]
		}
		return j, err
	})
	if errors.Is(err, errDeep) {
		return
	}
	if err != nil || SkipSpace(b, end) != len(b) {
		t.Fatalf("EachField(%q) = %d, %v", b, end, err)
	}
	if len(got) != len(want) {
		t.Fatalf("EachField(%q) found %d distinct fields, encoding/json %d", b, len(got), len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !bytes.Equal(g, bytes.TrimSpace(w)) {
			t.Fatalf("EachField(%q): field %q = %q, encoding/json: %q", b, k, g, w)
		}
	}
}

func checkArray(t *testing.T, b []byte) {
	var want []json.RawMessage
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	var got [][]byte
	end, err := EachElem(b, 0, func(i int) (int, error) {
		j, err := SkipValue(b, i)
		if err == nil {
			got = append(got, b[i:j])
		}
		return j, err
	})
	if errors.Is(err, errDeep) {
		return
	}
	if err != nil || SkipSpace(b, end) != len(b) || len(got) != len(want) {
		t.Fatalf("EachElem(%q) = %d, %v, %d elements; encoding/json %d", b, end, err, len(got), len(want))
	}
	for k := range want {
		if !bytes.Equal(got[k], bytes.TrimSpace(want[k])) {
			t.Fatalf("EachElem(%q): element %d = %q, encoding/json: %q", b, k, got[k], want[k])
		}
	}
}

// scanAll walks whatever SkipValue accepts, as the callers do.
func scanAll(b []byte) {
	EachField(b, 0, func(name []byte, i int) (int, error) { return SkipValue(b, i) })
	EachElem(b, 0, func(i int) (int, error) { return SkipValue(b, i) })
	RawStringOrNull(b, SkipSpace(b, 0))
}

func unquote(t *testing.T, raw []byte) string {
	t.Helper()
	return unmarshalString(t, append(append([]byte{'"'}, raw...), '"'))
}

func unmarshalString(t *testing.T, q []byte) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		t.Fatalf("encoding/json: %q: %v", q, err)
	}
	return s
}
