package tracker

import "testing"

// Metas are validated and kept compact: a meta with insignificant
// whitespace is stored (and later written into presence frames) without
// it; whitespace inside strings stays; invalid JSON is refused.
func TestWithRefsCompactsMetas(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"status":"online"}`, `{"phx_ref":"R","status":"online"}`},
		{" {\n  \"status\" : \"on line\",\t\"n\": [1, 2] }\n", `{"phx_ref":"R","status":"on line","n":[1,2]}`},
		{`{ }`, `{"phx_ref":"R"}`},
		{``, `{"phx_ref":"R"}`},
	} {
		got, err := withRefs([]byte(c.in), "R", "")
		if err != nil || string(got) != c.want {
			t.Errorf("withRefs(%q) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{`{"a": }`, `{"a":1} {}`, `[1]`, `{"a":1`, "{\"a\":\n1,}"} {
		if _, err := withRefs([]byte(bad), "R", ""); err != ErrInvalidMeta {
			t.Errorf("withRefs(%q): %v, want ErrInvalidMeta", bad, err)
		}
	}
}

// A meta cannot carry its own phx_ref or phx_ref_prev, however the key is
// spelled: JSON escapes name the same key, and the frames a client reads
// decode them, so an escaped spoof must be dropped like a plain one.
func TestWithRefsDropsEscapedRefs(t *testing.T) {
	for _, in := range []string{
		`{"phx\u005fref":"SPOOFED","a":1}`,
		`{"\u0070hx_ref":"SPOOFED","a":1}`,
		`{"phx_ref\u005fprev":"SPOOFED","a":1}`,
		`{"phx_ref":"SPOOFED","a":1}`,
	} {
		got, err := withRefs([]byte(in), "R", "P")
		if err != nil {
			t.Fatalf("withRefs(%s): %v", in, err)
		}
		if want := `{"phx_ref":"R","phx_ref_prev":"P","a":1}`; string(got) != want {
			t.Errorf("withRefs(%s) = %s, want %s", in, got, want)
		}
	}
	// A backslash elsewhere keeps its meaning.
	got, err := withRefs([]byte(`{"s":"a\"b\\c"}`), "R", "")
	if err != nil || string(got) != `{"phx_ref":"R","s":"a\"b\\c"}` {
		t.Errorf("escaped string: %s, %v", got, err)
	}
}
