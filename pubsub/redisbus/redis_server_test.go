package redisbus_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/testenv"
)

// redisServer is a redis-server process started for a test.
type redisServer struct {
	port int
	cmd  *exec.Cmd
}

// requireRedis returns the path of redis-server, or skips the test when
// it is missing (fails instead when PRESENCE_REQUIRE_ALL=1).
func requireRedis(t testing.TB) string {
	t.Helper()
	return testenv.LookPath(t, "redis-server", "apt-get install -y redis-server")
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRedis starts redis-server on port (0 = a free one), without
// persistence, and waits until it answers PING. It is killed at cleanup.
func startRedis(t testing.TB, port int) *redisServer {
	t.Helper()
	path := requireRedis(t)
	if port == 0 {
		port = freePort(t)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "redis.log")
	cmd := exec.Command(path,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no",
		"--dir", dir, "--logfile", logPath, "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	s := &redisServer{port: port, cmd: cmd}
	t.Cleanup(s.stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(port) == nil {
			return s
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("redis-server on port %d did not answer PING; its log:\n%s", port, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d", s.port) }

// stop kills the server and waits for it. Idempotent.
func (s *redisServer) stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

func ping(port int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
