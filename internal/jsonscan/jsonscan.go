package jsonscan

import (
	"errors"
	"fmt"
)

// Errors of the scanner; all wrap ErrSyntax so that callers branch on one.
var (
	// ErrSyntax is wrapped by every error of the scanner.
	ErrSyntax = errors.New("jsonscan: syntax error")

	errObject     = fmt.Errorf("%w: expected an object", ErrSyntax)
	errArray      = fmt.Errorf("%w: expected an array", ErrSyntax)
	errString     = fmt.Errorf("%w: expected a string", ErrSyntax)
	errUnterm     = fmt.Errorf("%w: unterminated string", ErrSyntax)
	errNullName   = fmt.Errorf("%w: null field name", ErrSyntax)
	errColon      = fmt.Errorf("%w: expected ':'", ErrSyntax)
	errObjEnd     = fmt.Errorf("%w: expected ',' or '}'", ErrSyntax)
	errArrEnd     = fmt.Errorf("%w: expected ',' or ']'", ErrSyntax)
	errUntermObj  = fmt.Errorf("%w: unterminated object", ErrSyntax)
	errUntermArr  = fmt.Errorf("%w: unterminated array", ErrSyntax)
	errValue      = fmt.Errorf("%w: expected a value", ErrSyntax)
	errDeep       = fmt.Errorf("%w: nested too deep", ErrSyntax)
	errMismatch   = fmt.Errorf("%w: mismatched bracket", ErrSyntax)
	errUntermVal  = fmt.Errorf("%w: unterminated value", ErrSyntax)
	errUnexpected = fmt.Errorf("%w: unexpected character", ErrSyntax)
)

// MaxDepth is how deeply SkipValue nests objects and arrays: its stack is
// fixed so that it never allocates. encoding/json allows 10000; the
// callers' values (metas, payloads) stay far below this.
const MaxDepth = 64

// IsSpace reports whether c is JSON whitespace.
func IsSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// SkipSpace returns the index of the first non-whitespace byte at or after
// b[i:], or len(b).
func SkipSpace(b []byte, i int) int {
	for i < len(b) && IsSpace(b[i]) {
		i++
	}
	return i
}

// TrimSpace returns b without JSON whitespace at either end.
func TrimSpace(b []byte) []byte {
	b = b[SkipSpace(b, 0):]
	for len(b) > 0 && IsSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// RawStringOrNull reads the string or null at b[i:] (no whitespace
// skipped): the string's contents without their quotes and with their
// escapes as written, or nil for null; and the index after it.
func RawStringOrNull(b []byte, i int) ([]byte, int, error) {
	if i+4 <= len(b) && string(b[i:i+4]) == "null" {
		return nil, i + 4, nil
	}
	if i >= len(b) || b[i] != '"' {
		return nil, i, errString
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return b[i+1 : j], j + 1, nil
		}
	}
	return nil, i, errUnterm
}

// EachField calls fn for every field of the object at b[i:] (after
// whitespace) with the field's name (raw, as RawStringOrNull gives it) and
// the index of its value (after whitespace); fn returns the index after the
// value (SkipValue for a value it does not read). EachField returns the
// index after the object.
func EachField(b []byte, i int, fn func(name []byte, i int) (int, error)) (int, error) {
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return i, errObject
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		name, j, err := RawStringOrNull(b, i)
		if err == nil && name == nil {
			err = errNullName
		}
		if err != nil {
			return j, err
		}
		j = SkipSpace(b, j)
		if j >= len(b) || b[j] != ':' {
			return j, errColon
		}
		if j, err = fn(name, SkipSpace(b, j+1)); err != nil {
			return j, err
		}
		j = SkipSpace(b, j)
		switch {
		case j >= len(b):
			return j, errUntermObj
		case b[j] == '}':
			return j + 1, nil
		case b[j] != ',':
			return j, errObjEnd
		}
		i = SkipSpace(b, j+1)
	}
}

// EachElem calls fn for every element of the array at b[i:] (after
// whitespace) with the index of the element (after whitespace); fn returns
// the index after it. EachElem returns the index after the array.
func EachElem(b []byte, i int, fn func(i int) (int, error)) (int, error) {
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != '[' {
		return i, errArray
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		j, err := fn(i)
		if err != nil {
			return j, err
		}
		j = SkipSpace(b, j)
		switch {
		case j >= len(b):
			return j, errUntermArr
		case b[j] == ']':
			return j + 1, nil
		case b[j] != ',':
			return j, errArrEnd
		}
		i = SkipSpace(b, j+1)
	}
}

// SkipValue returns the index after the JSON value at b[i:] (after
// whitespace). It checks the nesting of brackets and quotes, not every
// detail of the grammar (see the package doc).
func SkipValue(b []byte, i int) (int, error) {
	i = SkipSpace(b, i)
	if i >= len(b) {
		return i, errValue
	}
	switch b[i] {
	case '"':
		_, j, err := RawStringOrNull(b, i)
		return j, err
	case '{', '[':
		var stack [MaxDepth]byte
		depth := 0
		for j := i; j < len(b); j++ {
			switch c := b[j]; c {
			case '"':
				for j++; j < len(b) && b[j] != '"'; j++ {
					if b[j] == '\\' {
						j++
					}
				}
			case '{', '[':
				if depth == len(stack) {
					return j, errDeep
				}
				stack[depth] = c + 2 // '{'+2 = '}', '['+2 = ']'
				depth++
			case '}', ']':
				if depth == 0 || stack[depth-1] != c {
					return j, errMismatch
				}
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return len(b), errUntermVal
	default:
		j := i
		for j < len(b) && !isEnd(b[j]) {
			j++
		}
		if j == i {
			return j, fmt.Errorf("%w %q", errUnexpected, b[i])
		}
		return j, nil
	}
}

// isEnd reports whether c ends a bare value (number, true, false, null).
func isEnd(c byte) bool {
	return c == ',' || c == '}' || c == ']' || IsSpace(c)
}
