//go:build !linux

package loadtest

import (
	"errors"
	"time"
)

// Without epoll every connection has a reader goroutine.
type poller struct{}

func (w *worker) startPollers() error { return nil }

func (w *worker) stopPollers() {}

func (w *worker) startReading(c *client) error {
	w.readers.Add(1)
	go w.read(c)
	return nil
}

// renice is not supported here.
func renice(int) error { return errors.New("loadtest: -worker-nice needs Linux") }

// Without pollers no connection is detached: raw is never set.
func rawClose(int) error { return errors.New("loadtest: no raw descriptors here") }

func (c *Conn) rawWrite([]byte, time.Duration) error {
	return errors.New("loadtest: no raw descriptors here")
}
