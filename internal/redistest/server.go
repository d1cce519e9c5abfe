package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a started redis-server may take to answer
// PING.
const startTimeout = 5 * time.Second

// startAttempts is how many free ports Start tries: another process may
// take a port between picking it and redis-server binding it.
const startAttempts = 3

// errAddrInUse marks a start that failed because the port was taken.
var errAddrInUse = errors.New("address already in use")

// Server is a redis-server process started by [Start]. It is killed when
// the test that started it ends.
type Server struct {
	bin     string
	addr    string
	dir     string
	args    []string
	logPath string

	mu   sync.Mutex // guards proc
	proc *process   // nil while the server is not running
}

// process is one run of redis-server.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's result; read only after exited is closed
}

// Start starts a redis-server on a free port of 127.0.0.1, with no
// persistence and a temporary directory of its own, and waits until it
// answers PING. extraArgs are appended to its command line, so they can
// override the defaults (for example "--maxmemory", "1mb").
//
// Without redis-server on PATH the test is skipped, or fails when the
// environment has CI=true.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	bin := requireBinary(t, "redis-server")
	return startNode(t, bin, false, extraArgs)
}

// startNode starts one server, retrying on another port when the picked one
// was taken. With cluster set, the node runs in cluster mode and its port is
// chosen so that the cluster bus port (port+10000) is free as well.
func startNode(t testing.TB, bin string, cluster bool, extraArgs []string) *Server {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port, err := freePort(cluster)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		var args []string
		if cluster {
			args = append(args,
				"--cluster-enabled", "yes",
				"--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port),
				"--cluster-node-timeout", "2000",
			)
		}
		s := newServer(bin, port, t.TempDir(), append(args, extraArgs...))
		err = s.start()
		if err == nil {
			t.Cleanup(s.Kill)
			return s
		}
		if errors.Is(err, errAddrInUse) && attempt < startAttempts {
			continue
		}
		t.Fatalf("redistest: %v", err)
	}
}

func newServer(bin string, port int, dir string, extraArgs []string) *Server {
	args := []string{
		"--save", "",
		"--appendonly", "no",
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--dir", dir,
	}
	return &Server{
		bin:     bin,
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:     dir,
		args:    append(args, extraArgs...),
		logPath: filepath.Join(dir, "redis-server.log"),
	}
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Client returns a new client for the server, with a connection pool of its
// own, closed when the test ends. Separate clients stand for separate
// processes of a fleet.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill ends the server with SIGKILL, as a crash would, and waits for the
// process to exit. Killing a server that is not running does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Restart starts the server again on the same port, killing it first if it
// is still running, and waits until it answers PING. The data set starts
// empty: the server keeps nothing on disk.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if err = s.start(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		// The port may be held for a moment by a socket of the old process.
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
}

// start runs redis-server and waits until it answers PING. On failure the
// process is gone and the error carries the tail of its log.
func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		_ = logf.Close()
		return err
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	dieWithParent(cmd)
	err = cmd.Start()
	// The child has its own copy of the descriptor.
	_ = logf.Close()
	if err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	err = waitPing(s.addr, p, startTimeout)
	if err == nil {
		return nil
	}
	s.Kill()
	tail := s.logSince(logStart)
	err = fmt.Errorf("redis-server on %s: %w\n--- tail of %s ---\n%s", s.addr, err, s.logPath, tail)
	if strings.Contains(tail, "Address already in use") {
		err = fmt.Errorf("%w: %w", errAddrInUse, err)
	}
	return err
}

// waitPing polls addr with PING until it answers, the process exits or
// timeout passes.
func waitPing(addr string, p *process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before answering PING: %v", p.err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to PING within %v: %w", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends one PING over a new connection. It does without go-redis,
// whose pool backs off for a second after a failed dial.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// logSince returns the last few kilobytes the server wrote to its log from
// offset on.
func (s *Server) logSince(offset int64) string {
	const limit = 4 << 10
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if offset < int64(len(b)) {
		b = b[offset:]
	} else {
		b = nil
	}
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return string(b)
}

// freePort returns a port of 127.0.0.1 that was free a moment ago. With bus
// set, port+10000 (the cluster bus) was free as well.
func freePort(bus bool) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pick a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		if bus {
			ok = port+10000 <= 65535
			if ok {
				bl, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
				ok = err == nil
				if ok {
					_ = bl.Close()
				}
			}
		}
		_ = l.Close()
		if ok {
			return port, nil
		}
	}
	return 0, errors.New("found no free port whose cluster bus port is free too")
}

// requireBinary returns the path of name, or skips the test when it is not
// on PATH (fails it under CI=true). The first skip in a test binary also
// prints a note saying what is skipped and how to run it (see skipNotes).
func requireBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " not found on PATH; install it (apt-get install redis-server) or run `bash .ci/run` to run the real-Redis tests"
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("redistest: %s (CI=true, so the real-Redis tests may not be skipped)", msg)
		return ""
	}
	skipNotes.once(name, skipNote(name))
	t.Skip(msg)
	return ""
}
