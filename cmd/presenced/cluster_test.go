package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/gopresence/presence/pubsub/natsbus/natsembed"
)

const clusterSecret = "the nodes' shared cluster secret"

// fast are the tracker timings of the cluster tests.
var fast = []string{"--broadcast-period", "50ms", "--down-period", "1s", "--flush-interval", "5ms", "--shutdown-timeout", "3s"}

// embeddedNode starts a node with an embedded NATS and returns it with its
// NATS server.
func embeddedNode(t *testing.T, name string, args ...string) (*testNode, *natsembed.Server) {
	t.Helper()
	var srv *natsembed.Server
	n := startNode(t, append(append([]string{"--node", name, "--nats-embed"}, fast...), args...), nil,
		func(o *options) { o.onEmbedded = func(s *natsembed.Server) { srv = s } })
	return n, srv
}

// join connects user to n over WebSocket and joins room:lobby with a meta.
func join(t *testing.T, n *testNode, user string) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.addr+"/socket/websocket?vsn=2.0.0&user_id="+user, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	ws.WriteMessage(websocket.TextMessage, []byte(`["1","1","room:lobby","phx_join",{"meta":{"device":"test"}}]`))
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(`"phx_reply"`)) {
			if !bytes.Contains(b, []byte(`"status":"ok"`)) {
				t.Fatalf("join refused: %s", b)
			}
			return
		}
	}
}

// members are the keys of room:lobby as n sees them.
func members(t *testing.T, n *testNode) []string {
	t.Helper()
	resp, err := http.Get("http://" + n.addr + "/api/v1/topics/room:lobby")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range list {
		keys = append(keys, k)
	}
	return keys
}

// sees waits up to d for n to list user in room:lobby.
func sees(t *testing.T, n *testNode, user string, d time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		for _, k := range members(t, n) {
			if k == user {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func TestClusterSecretFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(file, []byte(clusterSecret+"\r\n"), 0o600)
	o, err := parse([]string{"--nats-embed", "--cluster-secret-file", file}, env(nil), &bytes.Buffer{})
	if err != nil || o.clusterSecret != clusterSecret {
		t.Fatalf("--cluster-secret-file: %q %v", o.clusterSecret, err)
	}
	o, err = parse([]string{"--nats-url", "nats://127.0.0.1:4222"}, env(map[string]string{"PRESENCE_CLUSTER_SECRET": clusterSecret}), &bytes.Buffer{})
	if err != nil || o.clusterSecret != clusterSecret {
		t.Fatalf("PRESENCE_CLUSTER_SECRET: %q %v", o.clusterSecret, err)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--nats-embed"}, map[string]string{"PRESENCE_CLUSTER_SECRET": ""}, "PRESENCE_CLUSTER_SECRET is set but empty"},
		{[]string{"--nats-embed", "--cluster-secret", ""}, nil, "--cluster-secret is set but empty"},
		{[]string{"--redis-url", "redis://127.0.0.1:6379", "--cluster-secret", "x"}, nil, "--redis-url"},
		{[]string{"--cluster-secret", "x"}, nil, "needs --nats-embed or --nats-url"},
		{[]string{"--nats-embed", "--nats-cluster-listen", "127.0.0.1:0", "--nats-route-tls-cert", "c"}, nil, "needs all of"},
		{[]string{"--nats-url", "nats://x", "--nats-route-tls-cert", "c", "--nats-route-tls-key", "k", "--nats-route-tls-ca", "a"}, nil, "need --nats-embed"},
	} {
		if _, err := parse(c.args, env(c.env), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %v: %v, want %q", c.args, c.env, err, c.want)
		}
	}
}

// With a cluster secret the embedded NATS refuses clients without it; nodes
// sharing it replicate; a node with another secret does not join.
func TestClusterSecret(t *testing.T) {
	a, natsA := embeddedNode(t, "a", "--nats-cluster-listen", "127.0.0.1:0", "--cluster-secret", clusterSecret)
	if strings.Contains(a.out.String(), natsOpenWarning) {
		t.Errorf("a node with a cluster secret warns:\n%s", a.out)
	}
	if nc, err := nats.Connect(natsA.ClientURL(), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("the embedded NATS accepted a client without the secret")
	}
	b, _ := embeddedNode(t, "b", "--nats-routes", natsA.ClusterURL(), "--cluster-secret", clusterSecret)
	join(t, a, "alice")
	if !sees(t, b, "alice", 10*time.Second) {
		t.Fatalf("b does not see a's member: %v", members(t, b))
	}
	c, _ := embeddedNode(t, "c", "--nats-routes", natsA.ClusterURL(), "--cluster-secret", "another secret")
	join(t, c, "carol")
	if sees(t, c, "alice", 1500*time.Millisecond) || sees(t, a, "carol", 0) {
		t.Fatalf("a node with another secret joined: c sees %v, a sees %v", members(t, c), members(t, a))
	}
	for _, n := range []*testNode{a, b, c} {
		if strings.Contains(n.out.String(), clusterSecret) {
			t.Errorf("the secret is in the log:\n%s", n.out)
		}
	}
}

// With --nats-url the secret is sent as the token, or given in the URL.
func TestClusterSecretExternalNATS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := natsembed.Start(ctx, natsembed.Config{Secret: clusterSecret})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	startNode(t, append([]string{"--node", "x1", "--nats-url", srv.ClientURL(), "--cluster-secret", clusterSecret}, fast...), nil, nil)
	u, _ := url.Parse(srv.ClientURL())
	u.User = url.User(clusterSecret)
	startNode(t, append([]string{"--node", "x2", "--nats-url", u.String()}, fast...), nil, nil)

	for _, args := range [][]string{{"--nats-url", srv.ClientURL()}, {"--nats-url", srv.ClientURL(), "--cluster-secret", "wrong"}} {
		var out bytes.Buffer
		err := run(ctx, append(append([]string{"--node", "x3", "--listen", "127.0.0.1:0"}, fast...), args...), env(nil), &out, &out)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// Without a cluster secret the embedded NATS is open, and the node says so.
func TestEmbeddedNATSWithoutSecretWarns(t *testing.T) {
	n, natsA := embeddedNode(t, "open")
	if !strings.Contains(n.out.String(), natsOpenWarning+": anyone who reaches "+natsA.ClientURL()) {
		t.Fatalf("no warning:\n%s", n.out)
	}
}

// writeRouteCerts writes a CA and a certificate for 127.0.0.1 signed by it
// (good for both ends of a route) into dir, and returns their files.
func writeRouteCerts(t *testing.T, dir string) (cert, key, ca string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA " + dir},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "route"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kDER, _ := x509.MarshalECPrivateKey(k)
	write := func(name, typ string, b []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	return write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", kDER), write("ca.pem", "CERTIFICATE", caDER)
}

// Routes with --nats-route-tls-*: nodes holding certificates of the CA
// replicate; a node with a certificate of another CA does not join.
func TestRouteTLSFlags(t *testing.T) {
	cert, key, ca := writeRouteCerts(t, t.TempDir())
	tlsArgs := func(cert, key, ca string) []string {
		return []string{"--nats-route-tls-cert", cert, "--nats-route-tls-key", key, "--nats-route-tls-ca", ca, "--cluster-secret", clusterSecret}
	}
	a, natsA := embeddedNode(t, "a", append([]string{"--nats-cluster-listen", "127.0.0.1:0"}, tlsArgs(cert, key, ca)...)...)
	b, _ := embeddedNode(t, "b", append([]string{"--nats-routes", natsA.ClusterURL()}, tlsArgs(cert, key, ca)...)...)
	join(t, a, "alice")
	if !sees(t, b, "alice", 10*time.Second) {
		t.Fatalf("b does not see a's member over TLS routes: %v", members(t, b))
	}
	oc, ok, oca := writeRouteCerts(t, t.TempDir())
	c, _ := embeddedNode(t, "c", append([]string{"--nats-routes", natsA.ClusterURL()}, tlsArgs(oc, ok, oca)...)...)
	if sees(t, c, "alice", 1500*time.Millisecond) {
		t.Fatal("a node with a certificate of another CA joined")
	}
	if _, err := parse([]string{"--nats-embed", "--nats-cluster-listen", "127.0.0.1:0", "--nats-route-tls-cert", cert,
		"--nats-route-tls-key", key, "--nats-route-tls-ca", key}, env(nil), &bytes.Buffer{}); err != nil {
		t.Fatal(err) // parse does not read the files; serve does:
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"--nats-embed", "--nats-cluster-listen", "127.0.0.1:0", "--nats-route-tls-cert", cert,
		"--nats-route-tls-key", key, "--nats-route-tls-ca", key}, env(nil), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "--nats-route-tls-ca") {
		t.Fatalf("a CA file without certificates: %v", err)
	}
}
