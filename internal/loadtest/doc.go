// Package loadtest drives a presenced (or any Phoenix channels server with
// the built-in presence channel) with many cheap WebSocket clients, for the
// connection benchmarks of BENCHMARKS.md ("Server"): memory per idle joined
// client, presence_diff fan-out latency, and sustained joins per second.
//
// The clients are deliberately minimal (a raw RFC 6455 client speaking the
// V2 JSON serializer, one goroutine and one 4 KiB read buffer each) so that
// a load process can hold many of them. One process may hold only ~19k
// sockets here (20,000 open files), so a Run spreads its clients over
// worker processes (the same binary re-executed, or goroutines in tests)
// and binds them to rotating 127.0.0.x source addresses, since one source
// address reaches only ~28k ephemeral ports.
//
// Every run is bounded: in clients, in time (Options.Timeout), and each
// worker exits by itself when its deadline passes or its coordinator goes
// away. By default only loopback servers are accepted.
package loadtest
