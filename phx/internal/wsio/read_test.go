package wsio

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/gorilla/websocket"
)

// Read errors: gorilla's verdicts on the client's frames are protocol
// errors (1002); ends of the stream and transport errors are not.
func TestIsProtocolError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{errors.New("websocket: bad MASK"), true},
		{errors.New("websocket: unknown opcode 3"), true},
		{websocket.ErrReadLimit, true},
		{io.EOF, false},
		{io.ErrUnexpectedEOF, false},
		{&net.OpError{Op: "read", Err: net.ErrClosed}, false},
		{fmt.Errorf("websocket: wrapped: %w", io.ErrClosedPipe), false},
		{errors.New("tls: received record with version 3 when expecting version 303"), false},
		{io.ErrClosedPipe, false},
	} {
		if got := isProtocolError(c.err); got != c.want {
			t.Errorf("isProtocolError(%v) = %v", c.err, got)
		}
	}
}
