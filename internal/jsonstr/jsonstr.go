// Package jsonstr appends strings as JSON, byte for byte as encoding/json
// writes them, without its reflection: the frame and payload encoders of
// phx and presence write topics, events and keys on every message.
package jsonstr

import "encoding/json"

// Append appends s to b as a JSON string, escaped as encoding/json escapes
// it (HTML-safe; invalid UTF-8 becomes U+FFFD). Plain printable ASCII, the
// usual case, is copied as is.
func Append(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
