package natsbus_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/natsbus"
	"github.com/gopresence/presence/pubsub/natsbus/natsembed"
)

func Example() {
	ctx := context.Background()
	// A NATS server inside the process, on a random loopback port.
	srv, err := natsembed.Start(ctx, natsembed.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	n1, err := natsbus.New(ctx, natsbus.Config{URL: srv.ClientURL(), NodeName: "n1"})
	if err != nil {
		log.Fatal(err)
	}
	defer n1.Close()
	n2, err := natsbus.New(ctx, natsbus.Config{URL: srv.ClientURL(), NodeName: "n2"})
	if err != nil {
		log.Fatal(err)
	}
	defer n2.Close()

	got := make(chan pubsub.Message, 1)
	n2.Subscribe("room:lobby", func(m pubsub.Message) { got <- m })

	n1.DirectBroadcast(ctx, "n2", "room:lobby", []byte("hello"))
	m := <-got
	fmt.Printf("%s got %q from %s\n", n2.NodeName(), m.Data, m.From)
	// Output: n2 got "hello" from n1
}
