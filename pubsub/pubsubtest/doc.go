// Package pubsubtest is a conformance suite for pubsub.Bus implementations,
// in the manner of testing/slogtest.
//
// An adapter's test calls Run with a function that builds a connected
// cluster of buses:
//
//	func TestConformance(t *testing.T) {
//		pubsubtest.Run(t, func(t *testing.T, names []string) []pubsub.Bus {
//			net := membus.NewNetwork()
//			var buses []pubsub.Bus
//			for _, name := range names {
//				b, err := net.Join(name)
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() { b.Close() })
//				buses = append(buses, b)
//			}
//			return buses
//		})
//	}
//
// RunReconnect is a second, separate check for adapters of a networked
// broker: buses outlive a restart of their server.
//
// The suite treats a subscription as eventually effective, as it is with
// a networked broker (a new NATS interest takes a moment to reach the other
// servers of a cluster): after subscribing, it sends synchronisation
// messages on the topic, through Broadcast and DirectBroadcast from every
// node, until every subscription has seen them, and only then sends the
// messages it checks. Checks that nothing arrives wait for a short quiet
// period after what had to arrive has arrived. Every wait is bounded.
package pubsubtest
