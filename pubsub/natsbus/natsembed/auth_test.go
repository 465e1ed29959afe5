package natsembed_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gopresence/presence/pubsub/natsbus/natsembed"
)

const secret = "a cluster secret of some length"

func start(t *testing.T, cfg natsembed.Config) *natsembed.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natsembed.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func connect(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// relays reports whether a message published on from reaches a subscriber
// on to within d.
func relays(t *testing.T, d time.Duration, from, to *nats.Conn) bool {
	t.Helper()
	sub, err := to.SubscribeSync("probe")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	to.Flush()
	// Interest travels over the route: publish until it arrives, bounded.
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		from.Publish("probe", []byte("x"))
		from.Flush()
		if _, err := sub.NextMsg(100 * time.Millisecond); err == nil {
			return true
		}
	}
	return false
}

func TestSecretRequiredOfClients(t *testing.T) {
	s := start(t, natsembed.Config{Secret: secret})
	for _, opts := range [][]nats.Option{nil, {nats.Token("wrong")}, {nats.UserInfo(natsembed.RouteUser, secret)}} {
		if nc, err := nats.Connect(s.ClientURL(), opts...); err == nil {
			nc.Close()
			t.Fatalf("a client without the secret (%d options) was accepted", len(opts))
		} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("refused, but not for authorization: %v", err)
		}
	}
	connect(t, s.ClientURL(), nats.Token(secret))
	connect(t, strings.Replace(s.ClientURL(), "nats://", "nats://"+strings.ReplaceAll(secret, " ", "%20")+"@", 1))

	if _, err := natsembed.Start(context.Background(), natsembed.Config{Secret: "$2a$11$abc"}); err == nil {
		t.Fatal("a bcrypt-like secret accepted")
	}
}

// Servers sharing the secret form a cluster; one with another secret, or
// none, is refused.
func TestSecretRequiredOfRoutes(t *testing.T) {
	a := start(t, natsembed.Config{ServerName: "a", Secret: secret, Cluster: &natsembed.Cluster{}})
	b := start(t, natsembed.Config{ServerName: "b", Secret: secret, Cluster: &natsembed.Cluster{Routes: []string{a.ClusterURL()}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitRoutes(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !relays(t, 5*time.Second, connect(t, a.ClientURL(), nats.Token(secret)), connect(t, b.ClientURL(), nats.Token(secret))) {
		t.Fatal("no message across the route")
	}
	wrong := start(t, natsembed.Config{ServerName: "c", Secret: "another secret", Cluster: &natsembed.Cluster{Routes: []string{a.ClusterURL()}}})
	open := start(t, natsembed.Config{ServerName: "d", Cluster: &natsembed.Cluster{Routes: []string{a.ClusterURL()}}})
	ca := connect(t, a.ClientURL(), nats.Token(secret))
	if relays(t, time.Second, ca, connect(t, wrong.ClientURL(), nats.Token("another secret"))) || relays(t, time.Second, ca, connect(t, open.ClientURL())) {
		t.Fatal("a server without the secret joined the cluster")
	}
	if wrong.NumRoutes() != 0 || open.NumRoutes() != 0 {
		t.Fatalf("routes: wrong secret %d, no secret %d", wrong.NumRoutes(), open.NumRoutes())
	}
}

// routeTLS returns a TLS configuration for routes on 127.0.0.1: a CA and one
// certificate signed by it, good for both ends of a connection.
func routeTLS(t *testing.T) *tls.Config {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "route"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs: pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

func TestRouteTLS(t *testing.T) {
	cfg := routeTLS(t)
	a := start(t, natsembed.Config{ServerName: "a", Secret: secret, Cluster: &natsembed.Cluster{TLS: cfg}})
	b := start(t, natsembed.Config{ServerName: "b", Secret: secret, Cluster: &natsembed.Cluster{TLS: cfg, Routes: []string{a.ClusterURL()}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitRoutes(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !relays(t, 5*time.Second, connect(t, a.ClientURL(), nats.Token(secret)), connect(t, b.ClientURL(), nats.Token(secret))) {
		t.Fatal("no message across the TLS route")
	}
	plain := start(t, natsembed.Config{ServerName: "c", Secret: secret, Cluster: &natsembed.Cluster{Routes: []string{a.ClusterURL()}}})
	if relays(t, time.Second, connect(t, a.ClientURL(), nats.Token(secret)), connect(t, plain.ClientURL(), nats.Token(secret))) || plain.NumRoutes() != 0 {
		t.Fatal("a server without TLS joined a TLS cluster")
	}
}
