// Command cronlock is the nightly snapshot job that must run once per night
// however many instances receive its trigger. Five instances get the same
// trigger and Locker.RunOnce lets one of them run it. That one is a process
// of its own, and it is killed with SIGKILL halfway through: its lease
// keeps the others out only until it runs out, the next trigger runs the
// snapshot again, and after that the night counts as done.
//
//	cd examples && go run ./cronlock
//	cd examples && go run ./cronlock -redis localhost:6379
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/examples/internal/demo"
)

type config struct {
	RedisAddr string        // empty: embedded miniredis
	Instances int           // instances that receive every trigger
	Lease     time.Duration // RunOnce's lease: how long a dead run keeps the others out
	Work      time.Duration // how long a snapshot takes
}

const (
	job = "nightly-snapshot"
	// RunOnce's windows are UTC days on the Redis server's clock (a run
	// straddling midnight UTC would see two nights).
	interval = 24 * time.Hour

	// doomedEnv, when set, makes this program the instance that is killed
	// in the middle of its run; the value is its doomedSpec as JSON.
	doomedEnv = "STAMPEDE_CRONLOCK_DOOMED"
)

func main() {
	if spec := os.Getenv(doomedEnv); spec != "" {
		os.Exit(doomedInstance(spec))
	}
	cfg := config{}
	flag.StringVar(&cfg.RedisAddr, "redis", "", "Redis address (default: an embedded miniredis)")
	flag.IntVar(&cfg.Instances, "instances", 5, "instances receiving the trigger")
	flag.DurationVar(&cfg.Lease, "lease", 2*time.Second, "RunOnce lease (LockerOptions.RunOnceTTL)")
	flag.DurationVar(&cfg.Work, "work", 500*time.Millisecond, "how long a snapshot takes")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "cronlock:", err)
		os.Exit(1)
	}
}

// instance is one server running the cron schedule.
type instance struct {
	n      int // 1-based, for the output
	rdb    *redis.Client
	locker *stampede.Locker
}

func newLocker(rdb redis.UniversalClient, ns string, lease time.Duration) (*stampede.Locker, error) {
	return stampede.NewLocker(rdb, stampede.LockerOptions{Namespace: ns, RunOnceTTL: lease})
}

func run(ctx context.Context, w io.Writer, cfg config) error {
	if cfg.Instances < 2 {
		return errors.New("need at least 2 instances")
	}
	rds, err := demo.StartRedis(ctx, cfg.RedisAddr)
	if err != nil {
		return err
	}
	ns := demo.Namespace("cronlock")
	defer rds.Close(context.WithoutCancel(ctx), ns)

	// Instance 1 runs in a process of its own, so that it can be killed;
	// the others run here.
	var rest []instance
	for n := 2; n <= cfg.Instances; n++ {
		rdb := rds.Client()
		defer rdb.Close()
		l, err := newLocker(rdb, ns, cfg.Lease)
		if err != nil {
			return err
		}
		rest = append(rest, instance{n: n, rdb: rdb, locker: l})
	}
	observer := rest[0].locker // reads who holds the lock, for the output

	var started, finished atomic.Int64
	snapshot := func(ctx context.Context) error {
		started.Add(1)
		select {
		case <-time.After(cfg.Work):
			finished.Add(1)
			return nil
		case <-ctx.Done(): // the lease was lost
			return context.Cause(ctx)
		}
	}

	fmt.Fprintf(w, "%s on %d instances: Locker.RunOnce, once a day, lease %v; Redis: %s.\n\n",
		job, cfg.Instances, cfg.Lease, rds)

	// Trigger 1: instance 1 fires first and starts the snapshot; the
	// others get the same trigger while it runs.
	doomed, err := startDoomed(ctx, doomedSpec{Addr: rds.Addr(), Namespace: ns, Lease: cfg.Lease})
	if err != nil {
		return err
	}
	started.Add(1)
	ran, skipped, err := trigger(ctx, rest, snapshot)
	if err != nil {
		_ = doomed.kill()
		return err
	}
	ranAlso := "" // stays empty unless RunOnce let two instances in
	if len(ran) > 0 {
		ranAlso = " and " + list(ran)
	}
	fmt.Fprintf(w, "trigger 1  %-28s skipped: %s\n",
		fmt.Sprintf("ran: instance 1 (pid %d)%s", doomed.pid(), ranAlso), list(skipped))
	if err := doomed.kill(); err != nil {
		return err
	}
	fmt.Fprintf(w, "           instance 1, a process of its own, is killed with SIGKILL in the middle of the snapshot\n")

	// Trigger 2, at once: the dead run's lease is still there.
	ran, skipped, err = trigger(ctx, rest, snapshot)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "trigger 2  %-28s skipped: %-9s %s\n", ranText(ran, ""), list(skipped), why(ctx, observer))

	// Nobody renews the dead run's lease, so it runs out.
	waited, err := waitFree(ctx, observer, 2*cfg.Lease+time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "           %v later its lease has run out, as nobody renewed it\n", waited.Round(100*time.Millisecond))

	// Trigger 3: one instance runs the snapshot to the end.
	ran, skipped, err = trigger(ctx, rest, snapshot)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "trigger 3  %-28s skipped: %s\n", ranText(ran, ", finished"), list(skipped))

	// Trigger 4: the night's snapshot is done.
	ran, skipped, err = trigger(ctx, rest, snapshot)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "trigger 4  %-28s skipped: %-9s %s\n", ranText(ran, ""), list(skipped), why(ctx, observer))

	fmt.Fprintf(w, "\nsnapshots started: %d, finished: %d\n", started.Load(), finished.Load())
	return nil
}

// trigger fires the cron trigger on every instance at once and returns the
// numbers of those that ran the job and of those that skipped it.
func trigger(ctx context.Context, instances []instance, fn func(context.Context) error) (ran, skipped []int, err error) {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, in := range instances {
		wg.Go(func() {
			r, err := in.locker.RunOnce(ctx, job, interval, fn)
			mu.Lock()
			defer mu.Unlock()
			if r {
				ran = append(ran, in.n)
			} else {
				skipped = append(skipped, in.n)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("instance %d: %w", in.n, err))
			}
		})
	}
	wg.Wait()
	slices.Sort(ran)
	slices.Sort(skipped)
	return ran, skipped, errors.Join(errs...)
}

// why tells why a trigger was skipped: a run holds the lock, or the
// night's run is done.
func why(ctx context.Context, l *stampede.Locker) string {
	h, err := l.Holder(ctx, job)
	switch {
	case errors.Is(err, stampede.ErrLockNotHeld):
		return "tonight's snapshot is done"
	case err != nil:
		return err.Error()
	}
	return fmt.Sprintf("the dead pid %d still holds the lease, for %v", h.PID, h.TTL.Round(100*time.Millisecond))
}

// waitFree waits until nobody holds the job's lock and says how long that took.
func waitFree(ctx context.Context, l *stampede.Locker, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		_, err := l.Holder(ctx, job)
		if errors.Is(err, stampede.ErrLockNotHeld) {
			return time.Since(start), nil
		}
		if err != nil {
			return 0, err
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("the lock on %s was still held after %v", job, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// list prints instance numbers: "2 3 4 5", or "none".
func list(ns []int) string {
	if len(ns) == 0 {
		return "none"
	}
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, " ")
}

// ranText says which instances ran the job.
func ranText(ran []int, suffix string) string {
	switch len(ran) {
	case 0:
		return "ran: none"
	case 1:
		return fmt.Sprintf("ran: instance %d%s", ran[0], suffix)
	}
	return "ran: instances " + list(ran) + suffix // RunOnce would be broken
}

// doomedSpec tells the doomed process where to find Redis.
type doomedSpec struct {
	Addr      string
	Namespace string
	Lease     time.Duration
}

// doomed is the instance that runs in a process of its own.
type doomed struct {
	cmd    *exec.Cmd
	stderr strings.Builder
}

// startDoomed starts this program again as the doomed instance and waits
// until it has started the snapshot.
func startDoomed(ctx context.Context, spec doomedSpec) (*doomed, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	d := &doomed{cmd: exec.CommandContext(ctx, exe)}
	d.cmd.Env = append(os.Environ(), doomedEnv+"="+string(b))
	d.cmd.Stderr = &d.stderr
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	// The first line it prints says whether it won the lock.
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Scan()
		lines <- sc.Text()
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case line := <-lines:
		if line == "running" {
			return d, nil
		}
		_ = d.kill()
		return nil, fmt.Errorf("instance 1 said %q instead of running: %s", line, d.stderr.String())
	case <-time.After(30 * time.Second):
		_ = d.kill()
		return nil, errors.New("instance 1 did not start the snapshot within 30s")
	}
}

func (d *doomed) pid() int { return d.cmd.Process.Pid }

// kill kills the process with SIGKILL (on Unix): no deferred call, no
// release of its lock, nothing runs.
func (d *doomed) kill() error {
	if err := d.cmd.Process.Kill(); err != nil {
		return err
	}
	err := d.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) && !exit.Exited() {
		return nil // killed by the signal, as intended
	}
	return fmt.Errorf("instance 1 ended before it was killed (%v): %s", err, d.stderr.String())
}

// doomedInstance is the body of the doomed process: it runs the snapshot
// under RunOnce, prints "running" once it has started, and works until it
// is killed. It returns the process's exit code.
func doomedInstance(specJSON string) int {
	var spec doomedSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rdb := redis.NewClient(&redis.Options{Addr: spec.Addr})
	locker, err := newLocker(rdb, spec.Namespace, spec.Lease)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ran, err := locker.RunOnce(context.Background(), job, interval, func(ctx context.Context) error {
		fmt.Println("running")
		<-ctx.Done() // a long snapshot: the process is killed long before it ends
		return ctx.Err()
	})
	if !ran {
		fmt.Println("skipped")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
