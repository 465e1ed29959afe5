// Command presenced is a standalone Presence server: the Phoenix channels
// protocol (the official phoenix.js client works unchanged) in front of a
// replicated presence set, with a live demo page.
//
//	go run ./cmd/presenced                 # one node on 127.0.0.1:4000, demo at /
//	presenced --help                       # every flag; each is also PRESENCE_<FLAG>
//
// Alone it runs on an in-process bus. --nats-url joins an external NATS,
// --nats-embed runs NATS inside the node (nodes route to each other with
// --nats-cluster-listen and --nats-routes), --redis-url uses Redis.
//
// Without --jwt-secret, --jwt-public-key or --jwt-jwks-url it runs in dev
// mode, user ids taken on trust, on loopback only; --cluster-secret
// authenticates the nodes' NATS. README.md ("Security") lists what
// presenced enforces and what the deployment must.
//
//	presenced token --sub alice --topics 'room:*'   # a JWT for a node's --jwt-secret
//	presenced version                              # module version, commit, Go
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr); err != nil {
		if err == errHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "presenced:", err)
		os.Exit(1)
	}
}
