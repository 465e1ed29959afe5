// Package queue is the FIFO between producers that must never wait and
// the one goroutine that drains it: the client's event callbacks, a
// tracker shard's diffs, a bus's deliveries. A producer appends (Push)
// without blocking; the consumer takes items in order (Pop one, or Take
// all), after a token on Ready; Close lets the consumer finish what is
// queued and stop.
//
// A consumer that reports its progress (Done) lets others wait for it:
// Flush for the items pushed so far, WaitIdle for every item, Busy to
// know whether it is between Take and Done.
package queue
