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
