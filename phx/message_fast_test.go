package phx

import (
	"reflect"
	"testing"
)

// FuzzDecodeV2FastPath: whatever the fast path decodes, the general decoder
// decodes alike.
func FuzzDecodeV2FastPath(f *testing.F) {
	for _, s := range []string{
		`["1","1","room:lobby","phx_join",{"meta":{"status":"online"}}]`,
		`[null,"5","phoenix","heartbeat",{}]`,
		` [ "1" , null , "room:a" , "ev" , [1,2] ] `,
		`["1","1","room:a","ev",{"a":1},"extra"]`,
		`["1","1","r\u00e9","ev",{}]`,
		`["1","1","room:a","ev",{}`,
		`["1","1",null,"ev",{}]`,
		`[1,2,"t","e",null]`,
		"[\"1\",\"1\",\"t\",\"e\",\f{}]",
		`["1","1","t","e",1 2]`,
		`["1","1","t","e",]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeV2Fast(data)
		if !ok {
			return
		}
		slow, err := decodeV2Slow(data)
		if err != nil {
			t.Fatalf("%q: fast path accepted, general decoder: %v", data, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\nfast %+v\nslow %+v", data, fast, slow)
		}
	})
}

func TestDecodeV2FastPathTaken(t *testing.T) {
	for _, s := range []string{
		`["1","1","room:lobby","phx_join",{"meta":{"status":"online"}}]`,
		`[null,"5","phoenix","heartbeat",{}]`,
		" [ \"1\" ,\tnull ,\n\"room:a\" , \"ev\" , [1,2] ]\r\n",
	} {
		if _, ok := decodeV2Fast([]byte(s)); !ok {
			t.Errorf("%q: fast path not taken", s)
		}
	}
	for _, s := range []string{
		`["1","1","room:a","ev",{"a":1},"extra"]`, // extra elements: general decoder
		`["1","1","r\u00e9","ev",{}]`,             // escapes
		`[1,2,"t","e",{}]`,                        // number refs
		"[\"1\",\"1\",\"t\",\"e\",\f{}]",          // not JSON whitespace
	} {
		if _, ok := decodeV2Fast([]byte(s)); ok {
			t.Errorf("%q: fast path taken", s)
		}
	}
}

func BenchmarkDecodeV2(b *testing.B) {
	data := []byte(`["12","12","room:j4711","phx_join",{"meta":{"status":"online","c":1234,"n":56}}]`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeV2(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeV2Slow(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
