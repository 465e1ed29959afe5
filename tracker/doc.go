// Package tracker is the replication engine (Phoenix.Tracker rebuilt):
// it keeps every node's replica of who is present in sync over a
// pubsub.Bus, with heartbeats, deltas, transfers, down / permdown timers
// for peers that go silent, and a grace for peers that say they stop
// (Shutdown sends it: peers keep the node's presences for ShutdownGrace, so
// that its clients reconnect elsewhere without leaving).
//
// The engine is split in two. RawShard is a pure, synchronous step machine
// (commands, inbound messages and Tick in; messages and diffs out), so
// clusters of them can be simulated deterministically and the reference
// traces recorded from Phoenix replay through it. Tracker is the shell: it
// owns time and the network, runs PoolSize shards (topics are spread by an
// FNV-1a hash), sends each shard's pending delta within FlushInterval, and
// hands diffs to Config.HandleDiff in order, from one goroutine per shard,
// never blocking the shard.
//
// Concurrency. Commands (Track, Update, Untrack) run in the caller's
// goroutine under the shard's lock: a lock costs far less than a goroutine
// hop, and Track throughput is a target. Reads (List, Get, Count) take no
// shard lock at all: they read the State's per-topic sets, so they never
// wait behind replication work.
package tracker
