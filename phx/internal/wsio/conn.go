package wsio

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Peer is the connection above wsio: it holds what is to be written and
// hears what the client's control frames say. Pull and WriteFailed are
// called by whichever goroutine is writing, Ping and CloseReceived by the
// reader (inside ReadMessage), never with Conn's lock held; none may block.
type Peer interface {
	// Pull adds to b everything waiting to be written, in order, and says
	// whether a close follows it.
	Pull(b *Batch) End
	// WriteFailed reports that the socket failed a write: it is closed,
	// and nothing more is written.
	WriteFailed()
	// Ping reports a ping; the Peer queues the pong.
	Ping(data []byte)
	// CloseReceived reports the client's close frame (invalid: its payload
	// was a single byte, a protocol error).
	CloseReceived(code int, invalid bool)
}

// End is what follows a pulled batch.
type End struct {
	Closing bool   // the connection closes after the batch
	Code    int    // the close frame's code; 0: none is sent
	Reason  string // its reason
	Echo    bool   // the close answers the client's: no need to wait for one
}

// CloseGrace is how long the reader waits for the client's close frame
// after the server sent its own.
const CloseGrace = 2 * time.Second

// Conn is one upgraded WebSocket. Reads (ReadMessage) belong to one reader
// goroutine at a time; writes are started by Kick or Send from any
// goroutine and done by one writer at a time.
type Conn struct {
	ws   *websocket.Conn // reads only: gorilla is muted for writes
	mc   *mutedConn
	nc   net.Conn // the socket, for writes and the close
	peer Peer
	// raw writes without blocking (rawWriter), nil when the socket is not
	// a plain one (TLS): every write then goes through the writer
	// goroutine. Only the goroutine that is the writer (active) calls it.
	raw     func([]byte) (int, error)
	writers sync.WaitGroup // the goroutine writing, if any
	timeout time.Duration  // WriteTimeout of the writer goroutine's writes
	// pending counts the bytes taken from the Peer but not yet handed to
	// the kernel: the rest of a cut raw write, and the writer's batch. The
	// Peer reads it (Pending) against its bound.
	pending atomic.Int64

	// wmu guards the write side.
	wmu sync.Mutex
	// active: a goroutine is the writer (a raw write in progress, or the
	// writer goroutine). It stays set once the socket is done: nothing is
	// written after the close.
	active bool
	// dirty: Kick was called while a writer was active; the writer pulls
	// again before it goes idle.
	dirty bool
	// partial is the unwritten rest of a raw write the socket cut; the
	// writer sends it before anything else, the close frame included.
	partial []byte
	// closing: the Peer is closing; reads are discarded and the idle
	// deadline no longer moves (Closing).
	closing bool
}

// Start makes p the connection's Peer and starts reporting control frames
// to it; writes of the writer goroutine get writeTimeout. Call it once,
// before anything else.
func (c *Conn) Start(p Peer, writeTimeout time.Duration) {
	c.peer, c.timeout = p, writeTimeout
	c.startReading()
}

// Pending is the number of bytes taken from the Peer and not yet handed to
// the kernel.
func (c *Conn) Pending() int64 { return c.pending.Load() }

// Closing tells the connection that its Peer is closing: further messages
// are discarded unread and SetIdle no longer moves the read deadline.
func (c *Conn) Closing() {
	c.wmu.Lock()
	c.closing = true
	c.wmu.Unlock()
}

// WaitWriter waits for the goroutine writing, if any. Call it once the
// Peer is closing (nothing starts a writer after the close is written).
func (c *Conn) WaitWriter() { c.writers.Wait() }

// Close waits for the goroutine writing, if any, and closes the socket.
// The reader calls it once reading is over.
func (c *Conn) Close() {
	c.writers.Wait()
	c.nc.Close()
}

// Abort closes the socket at once: whatever is being written or read
// fails.
func (c *Conn) Abort() { c.nc.Close() }

// Refuse writes a close frame with code and reason (within a second) and
// closes the socket: for a connection upgraded but not taken into service.
func (c *Conn) Refuse(code int, reason string) {
	var b Batch
	b.AddFrame(OpClose, ClosePayload(code, reason))
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	b.writeTo(c.nc)
	c.nc.Close()
}
