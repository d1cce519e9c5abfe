package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// server is the Redis the fleet shares: one this program started, or one
// given with -redis.
type server struct {
	addr    string
	version string
	cmd     *exec.Cmd // nil when not started here
	dir     string
}

// startServer starts redis-server on a free loopback port, with no
// persistence, in a temporary directory. It dies with this process.
func startServer(ctx context.Context) (*server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not on PATH: install it (apt-get install redis-server) or pass -redis ADDR")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "peers-redis-")
	if err != nil {
		return nil, err
	}
	s := &server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	s.cmd = exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		// The herd opens thousands of connections over a run.
		"--maxclients", "20000",
	)
	dieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	if err := s.connect(ctx, 5*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// dialServer checks that a Redis server answers at addr.
func dialServer(ctx context.Context, addr string) (*server, error) {
	s := &server{addr: addr}
	return s, s.connect(ctx, 2*time.Second)
}

// connect waits until the server answers PING, then reads its version.
func (s *server) connect(ctx context.Context, limit time.Duration) error {
	rdb := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, DisableIdentity: true})
	defer rdb.Close()
	deadline := time.Now().Add(limit)
	for {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis at %s: %w", s.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return err
	}
	s.version = infoField(info, "redis_version")
	return nil
}

func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverStats is what the server counted: commands (a script's own calls
// included, as INFO commandstats counts them) and its CPU time.
type serverStats struct {
	calls map[string]int64 // per command, from INFO commandstats
	cpu   time.Duration    // used_cpu_user + used_cpu_sys
}

func readServerStats(ctx context.Context, rdb *redis.Client) (serverStats, error) {
	info, err := rdb.Info(ctx, "cpu", "commandstats").Result()
	if err != nil {
		return serverStats{}, err
	}
	st := serverStats{calls: map[string]int64{}}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if name, rest, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(name, "cmdstat_") {
			for _, f := range strings.Split(rest, ",") {
				if v, ok := strings.CutPrefix(f, "calls="); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					st.calls[strings.TrimPrefix(name, "cmdstat_")] = n
				}
			}
		}
	}
	for _, f := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, _ := strconv.ParseFloat(infoField(info, f), 64)
		st.cpu += time.Duration(v * float64(time.Second))
	}
	return st, nil
}

// sub returns what the server counted between b and s, leaving out the
// INFO commands that read the counters.
func (s serverStats) sub(b serverStats) serverStats {
	d := serverStats{calls: map[string]int64{}, cpu: s.cpu - b.cpu}
	for k, v := range s.calls {
		if k == "info" {
			continue
		}
		if n := v - b.calls[k]; n > 0 {
			d.calls[k] = n
		}
	}
	return d
}

func (s serverStats) total() int64 {
	var n int64
	for _, v := range s.calls {
		n += v
	}
	return n
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
