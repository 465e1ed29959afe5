package natsbus

import (
	"encoding/binary"
	"errors"
	"strings"
)

// escapeToken turns s into a non-empty NATS subject token that keeps
// [A-Za-z0-9_:-] and escapes every other byte as "~XX". The empty string
// becomes "~", which no other input produces.
func escapeToken(s string) string {
	if s == "" {
		return "~"
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xF])
	}
	return b.String()
}

func plain(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '-' || c == ':'
}

var errBadToken = errors.New("natsbus: malformed subject token")

// unescapeToken reverses escapeToken.
func unescapeToken(tok string) (string, error) {
	if tok == "~" {
		return "", nil
	}
	if tok == "" {
		return "", errBadToken
	}
	if strings.IndexByte(tok, '~') < 0 {
		return tok, nil
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '~' {
			out = append(out, c)
			continue
		}
		if i+2 >= len(tok) {
			return "", errBadToken
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		if !ok1 || !ok2 {
			return "", errBadToken
		}
		out = append(out, hi<<4|lo)
		i += 2
	}
	return string(out), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// envelopeVersion is the first byte of every message body.
const envelopeVersion = 1

var errBadEnvelope = errors.New("natsbus: malformed envelope")

// appendEnvelope appends the envelope of (from, data) to dst.
func appendEnvelope(dst []byte, from string, data []byte) []byte {
	dst = append(dst, envelopeVersion)
	dst = binary.AppendUvarint(dst, uint64(len(from)))
	dst = append(dst, from...)
	return append(dst, data...)
}

// envelopeSize is the encoded size of (from, data).
func envelopeSize(from string, data []byte) int {
	var tmp [binary.MaxVarintLen64]byte
	return 1 + binary.PutUvarint(tmp[:], uint64(len(from))) + len(from) + len(data)
}

// decodeEnvelope splits a message body into the sender and the payload.
// The payload aliases b.
func decodeEnvelope(b []byte) (from string, data []byte, err error) {
	if len(b) < 2 || b[0] != envelopeVersion {
		return "", nil, errBadEnvelope
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return "", nil, errBadEnvelope
	}
	rest := b[1+k:]
	return string(rest[:n]), rest[n:], nil
}
