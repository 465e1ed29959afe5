// Package tracker is the replication engine (Phoenix.Tracker rebuilt):
// it keeps every node's replica of who is present in sync over a
// pubsub.Bus, with heartbeats, deltas, transfers, down / permdown timers
// for peers that go silent, and a grace for peers that say they stop
// (Shutdown sends it: peers keep the node's presences for ShutdownGrace, so
// that its clients reconnect elsewhere without leaving).
//
// The engine is split in two. The raw shard (internal/rawshard) is a
// pure, synchronous step machine (commands, inbound messages, ticks and
// deadlines in; messages and diffs out), so clusters of them are simulated
// deterministically (internal/sim) and the reference traces recorded from
// Phoenix replay through it. This package is the shell, one concern per
// file: the Tracker (tracker.go) runs PoolSize shards, spreads topics over
// them by an FNV-1a hash and owns their lifecycle; a shard (shard.go) owns
// its raw shard, the lock around it, its time and its network; the
// dispatcher (dispatch.go) hands a shard's diffs to the handler given to
// New, in order, from one goroutine per shard, never blocking the shard;
// meta.go makes phx_refs and puts them in metas. When a local change is
// sent (within FlushInterval) is the raw shard's decision, not the
// shell's: the simulator and the shard read one policy.
//
// Concurrency. Commands (Track, Update, Untrack) run in the caller's
// goroutine under the shard's lock: a lock costs far less than a goroutine
// hop, and Track throughput is a target. They do no I/O and honour ctx: a
// command whose ctx is done before it takes effect changes nothing. Reads
// (List, Get, Count) take no shard lock at all: they read the State's
// per-topic sets, so they never wait behind replication work.
package tracker
