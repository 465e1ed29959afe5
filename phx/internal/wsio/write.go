package wsio

import "time"

// The write side. One goroutine at a time is the writer (Conn.active,
// claimed under wmu): a caller of Send or Kick doing one non-blocking raw
// write, or the writer goroutine, which exists only while something waits.
// The writer takes what the Peer holds with Peer.Pull, never holding wmu
// meanwhile; a Kick that finds a writer active sets dirty, and the writer
// pulls again before it goes idle, so no wake-up is lost.

// Send writes b (whole frames) at once from the calling goroutine, with
// one non-blocking write, if nothing is being written and nothing waits; it
// reports false (and writes nothing) otherwise, or when raw writes are not
// available. What the socket does not take goes to the writer goroutine.
// b must not change until written: a broadcast's shared frame.
func (c *Conn) Send(b []byte) bool {
	c.wmu.Lock()
	if c.raw == nil || c.active || c.closing || c.partial != nil {
		c.wmu.Unlock()
		return false
	}
	c.claimLocked()
	c.wmu.Unlock()
	c.writeOut(b, nil)
	return true
}

// Kick gets what the Peer has waiting written. When no writer runs, the
// calling goroutine pulls it and writes it itself, all in one non-blocking
// write, and starts the writer goroutine only for what the socket did not
// take, for a large batch (written from the frames' own bytes rather than
// copied together), or for a close. This saves a goroutine start per frame
// and turns a join's reply and presence_state into one write(2).
func (c *Conn) Kick() {
	c.wmu.Lock()
	if c.active {
		c.dirty = true
		c.wmu.Unlock()
		return
	}
	c.claimLocked()
	p := c.partial
	c.partial = nil
	c.wmu.Unlock()

	b := c.pull(p)
	end := c.peer.Pull(b)
	if end.Closing || p != nil || c.raw == nil || b.n > maxScratch {
		c.writers.Add(1)
		go c.writer(b, end)
		c.writers.Done() // handed over to the writer, which counts itself
		return
	}
	if b.n == 0 {
		putBatch(b)
		c.wmu.Lock()
		c.idleLocked()
		c.wmu.Unlock()
		c.writers.Done()
		return
	}
	c.pending.Add(-b.n) // a raw write is not counted (it never blocks)
	buf, sp := b.flat()
	c.writeOut(buf, sp)
	putBatch(b)
}

// pull returns a batch starting with p (the rest of a cut write, already
// counted in pending) that counts what the Peer adds to it in pending.
func (c *Conn) pull(p []byte) *Batch {
	b := getBatch()
	b.Add(p)
	b.count = &c.pending
	return b
}

// SwapRaw replaces the raw write function by swap(the current one) (tests
// wrap it to record or cut writes); it reports false, and changes nothing,
// while a write is in progress or waiting, or when raw writes are not
// available.
func (c *Conn) SwapRaw(swap func(old func([]byte) (int, error)) func([]byte) (int, error)) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.active || c.partial != nil || c.raw == nil {
		return false
	}
	c.raw = swap(c.raw)
	return true
}

// claimLocked makes the calling goroutine the writer, counted in writers
// (Close waits for it). c.wmu must be held.
func (c *Conn) claimLocked() {
	c.active = true
	c.dirty = false
	c.writers.Add(1)
}

// idleLocked ends the current writer's turn: or, if Kick was called
// meanwhile, pulls again on a writer goroutine. c.wmu must be held.
func (c *Conn) idleLocked() {
	if c.dirty || c.partial != nil {
		c.dirty = false
		c.writers.Add(1)
		go c.writer(nil, End{})
		return
	}
	c.active = false
}

// writeOut writes buf with one non-blocking write, as the writer claimed
// by claimLocked, and hands what the socket did not take (and anything the
// Peer queued meanwhile) to the writer goroutine. sp, if set, is the
// scratch buffer behind buf.
func (c *Conn) writeOut(buf []byte, sp *[]byte) {
	defer c.writers.Done() // after a hand-over to the writer, which adds its own
	n, err := c.raw(buf)
	if err != nil {
		putScratch(sp, buf)
		c.fail()
		return
	}
	c.wmu.Lock()
	if n < len(buf) {
		rest := buf[n:]
		if sp != nil {
			rest = append([]byte(nil), rest...)
		}
		c.partial = rest
		c.pending.Add(int64(len(rest)))
	}
	putScratch(sp, buf)
	c.idleLocked()
	c.wmu.Unlock()
}

// fail ends a connection whose socket failed a write: it is closed, the
// writer stays claimed so that nothing more is written, and the Peer
// learns of it.
func (c *Conn) fail() {
	c.nc.Close()
	c.peer.WriteFailed()
}

// writer writes batches pulled from the Peer until there is nothing left
// (the next frame goes out by Kick or Send again), or performs the close
// and returns for good (active stays set). Each round writes everything
// waiting in one write, under one deadline. b, if set, is a first batch
// already pulled, followed by end.
func (c *Conn) writer(b *Batch, end End) {
	defer c.writers.Done()
	wrote := false
	for {
		if b == nil {
			c.wmu.Lock()
			p := c.partial
			c.partial = nil
			c.dirty = false
			c.wmu.Unlock()
			b = c.pull(p)
			end = c.peer.Pull(b)
		}
		if b.n == 0 && !end.Closing {
			putBatch(b)
			c.wmu.Lock()
			if c.dirty || c.partial != nil {
				c.wmu.Unlock()
				b = nil
				continue
			}
			if wrote {
				// Raw writes go through the same descriptor: a
				// deadline left behind would fail them once past.
				c.nc.SetWriteDeadline(time.Time{})
			}
			c.active = false
			c.wmu.Unlock()
			return
		}
		if end.Closing && end.Code != 0 {
			b.AddFrame(OpClose, ClosePayload(end.Code, end.Reason))
		}
		n := b.n
		if n > 0 {
			wrote = true
			c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
			err := b.writeTo(c.nc)
			c.pending.Add(-n)
			putBatch(b)
			if err != nil {
				c.fail()
				return
			}
		} else {
			putBatch(b)
		}
		b = nil
		if end.Closing {
			if end.Code == 0 || end.Echo {
				// Nothing to say, or our close answered the client's:
				// the connection is done.
				c.nc.Close()
				return
			}
			// Wait briefly for the client's close frame.
			c.wmu.Lock()
			c.closing = true
			c.ws.SetReadDeadline(time.Now().Add(CloseGrace))
			c.wmu.Unlock()
			return
		}
	}
}
