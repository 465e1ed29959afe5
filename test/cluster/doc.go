// Package cluster holds failure tests with real processes: presenced nodes
// built from ./cmd/presenced, replicating over an embedded NATS cluster,
// an external NATS, or a real redis-server, with clients connected to
// different nodes; nodes are killed (-9), restarted under the same name,
// stopped with SIGTERM, and partitioned through TCP proxies the tests
// control. After every failure the tests check what each node shows: no
// lost presence, no ghost.
package cluster
