package natsembed_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/gopresence/presence/pubsub/natsbus/natsembed"
)

// Two servers forming one NATS cluster, as two presenced nodes would: the
// second lists the first's route URL (both could list each other).
func Example_cluster() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := natsembed.Start(ctx, natsembed.Config{ServerName: "a", Cluster: &natsembed.Cluster{}})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := natsembed.Start(ctx, natsembed.Config{
		ServerName: "b",
		Cluster:    &natsembed.Cluster{Routes: []string{a.ClusterURL()}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	if err := a.WaitRoutes(ctx, 1); err != nil {
		log.Fatal(err)
	}
	fmt.Println("routes on a:", a.NumRoutes() > 0)
	// Output: routes on a: true
}
