package redisbus

import (
	"encoding/binary"
	"errors"
)

const envelopeVersion = 1

// Modes of an envelope.
const (
	modeBroadcast = 'b'
	modeDirect    = 'd'
)

var errBadEnvelope = errors.New("redisbus: malformed envelope")

// envelope is a decoded message body. data aliases the decoded buffer.
type envelope struct {
	mode  byte
	from  string
	topic string
	data  []byte
}

func envelopeSize(from, topic string, data []byte) int {
	var tmp [binary.MaxVarintLen64]byte
	return 2 + binary.PutUvarint(tmp[:], uint64(len(from))) + len(from) +
		binary.PutUvarint(tmp[:], uint64(len(topic))) + len(topic) + len(data)
}

func appendEnvelope(dst []byte, mode byte, from, topic string, data []byte) []byte {
	dst = append(dst, envelopeVersion, mode)
	dst = binary.AppendUvarint(dst, uint64(len(from)))
	dst = append(dst, from...)
	dst = binary.AppendUvarint(dst, uint64(len(topic)))
	dst = append(dst, topic...)
	return append(dst, data...)
}

func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) < 4 || b[0] != envelopeVersion || (b[1] != modeBroadcast && b[1] != modeDirect) {
		return envelope{}, errBadEnvelope
	}
	e := envelope{mode: b[1]}
	rest := b[2:]
	var ok bool
	if e.from, rest, ok = cutString(rest); !ok {
		return envelope{}, errBadEnvelope
	}
	if e.topic, rest, ok = cutString(rest); !ok {
		return envelope{}, errBadEnvelope
	}
	e.data = rest
	return e, nil
}

func cutString(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}
