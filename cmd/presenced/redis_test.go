package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/testenv"
)

// startRedis starts a redis-server on a free loopback port that requires
// password, and returns its port. It is killed at cleanup.
func startRedis(t *testing.T, password string) int {
	t.Helper()
	path := testenv.LookPath(t, "redis-server", "apt-get install -y redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"), "--requirepass", password)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Up once it answers, even if only to refuse an unauthenticated PING.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			fmt.Fprint(c, "PING\r\n")
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && line != "" {
				return port
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server did not answer:\n%s", log)
		}
	}
}

// A password in --redis-url authenticates the node (go-redis reads it);
// without it, or with a wrong one, the node does not start.
func TestRedisPassword(t *testing.T) {
	const password = "a redis password"
	port := startRedis(t, password)
	withPassword := fmt.Sprintf("redis://:%s@127.0.0.1:%d", strings.ReplaceAll(password, " ", "%20"), port)
	a := startNode(t, append([]string{"--node", "a", "--redis-url", withPassword}, fast...), nil, nil)
	b := startNode(t, append([]string{"--node", "b"}, fast...), map[string]string{"PRESENCE_REDIS_URL": withPassword}, nil)
	join(t, a, "alice")
	if !sees(t, b, "alice", 10*time.Second) {
		t.Fatalf("b does not see a's member over Redis: %v", members(t, b))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, u := range []string{fmt.Sprintf("redis://127.0.0.1:%d", port), fmt.Sprintf("redis://:wrong-password@127.0.0.1:%d", port)} {
		var out bytes.Buffer
		err := run(ctx, append([]string{"--node", "c", "--listen", "127.0.0.1:0", "--redis-url", u}, fast...), env(nil), &out, &out)
		if err == nil || !strings.Contains(err.Error(), "NOAUTH") && !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("%s: %v", u, err)
		}
		if strings.Contains(err.Error()+out.String(), "wrong-password") {
			t.Errorf("the password is in the error or the log: %v\n%s", err, &out)
		}
	}
}
