package jsonstr

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
)

func FuzzAppend(f *testing.F) {
	for _, s := range []string{"", "room:lobby", `a"b\c`, "<&>", "tab\there", "ünï", "\xff", "\u2028", "\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := Append([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("Append(%q) = %s, encoding/json: %s", s, got[1:], want)
		}
	})
}

func FuzzWrite(f *testing.F) {
	for _, s := range []string{"", `["1","1","room:a","phx_reply",{}]`, `a"b\c`, "<&>", "\b\f\n\r\t\x01\x7f", "ünï", "\xff\xfe", "\u2028\u2029", "x\xe2\x80"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, _ := json.Marshal(string(b))
		var out bytes.Buffer
		w := bufio.NewWriterSize(&out, 16)
		Write(w, b)
		w.Flush()
		if out.String() != string(want) {
			t.Fatalf("Write(%q) = %s, encoding/json: %s", b, out.Bytes(), want)
		}
	})
}
