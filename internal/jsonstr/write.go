package jsonstr

import (
	"bufio"
	"unicode/utf8"
)

const hex = "0123456789abcdef"

// Write writes b to w as a JSON string, escaped as encoding/json escapes a
// string holding b, without building the escaped copy in memory first:
// long-poll answers stream frames of any size this way.
func Write(w *bufio.Writer, b []byte) {
	w.WriteByte('"')
	start := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			w.Write(b[start:i])
			switch c {
			case '"', '\\':
				w.Write([]byte{'\\', c})
			case '\b':
				w.WriteString(`\b`)
			case '\f':
				w.WriteString(`\f`)
			case '\n':
				w.WriteString(`\n`)
			case '\r':
				w.WriteString(`\r`)
			case '\t':
				w.WriteString(`\t`)
			default:
				w.Write([]byte{'\\', 'u', '0', '0', hex[c>>4], hex[c&0xF]})
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			w.Write(b[start:i])
			w.WriteString(`\ufffd`)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			w.Write(b[start:i])
			w.Write([]byte{'\\', 'u', '2', '0', '2', hex[r&0xF]})
			i += size
			start = i
			continue
		}
		i += size
	}
	w.Write(b[start:])
	w.WriteByte('"')
}
