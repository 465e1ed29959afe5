// Package rawshard is one tracker shard (Phoenix.Tracker.Shard) as a
// pure, synchronous step machine: commands, inbound messages and time go
// in; the messages to send and the diffs of what a node shows come out
// through Ready. It reads no clock, starts no goroutine and does no I/O, so
// a whole cluster of shards runs deterministically on virtual time
// (internal/sim) and the reference traces recorded from Phoenix replay
// through the same code the tracker runs (as etcd raft's RawNode is driven
// by its node.go or by its interaction tests).
//
// The caller (a shell: the tracker's shard goroutine, or the simulator)
// owns time and the network, and has these duties:
//
//   - Give every call the shell's monotonic time, never decreasing.
//   - Call Tick every Config.BroadcastPeriod.
//   - Call Advance once NextDeadline has come: the flush of a pending
//     delta (Config.FlushInterval) and the end of a stopping peer's grace
//     are deadlines of the shard, not of its shell, so every shell applies
//     one policy.
//   - After each call, take Ready: send its Outbound messages in order and
//     hand its Diffs on in order. Ready.NewDeadline says that NextDeadline
//     moved earlier, so that a shell sleeping on a timer rearms it.
//
// A Shard is not safe for concurrent use, except for the read methods of
// its State, which may run while the owner writes.
package rawshard
