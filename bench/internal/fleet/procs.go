package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Worker processes share nothing with the coordinator but Redis and their
// pipes: the job comes in as JSON on stdin, the partial result goes out as
// JSON on stdout, and the start barrier goes through Redis. Each worker
// subscribes to <ns>:start, then increments <ns>:ready; the coordinator
// publishes on <ns>:start once the count is complete.

// runProcs runs job j over cfg.Procs worker processes.
func runProcs(ctx context.Context, cfg Config, ctl *redis.Client, j job) (partial, error) {
	ctx, cancel := context.WithTimeout(ctx, runLimit(j)+30*time.Second)
	defer cancel()
	procs := min(cfg.Procs, cfg.Nodes)
	groups := make([][]int, procs)
	for id := range cfg.Nodes {
		groups[id%procs] = append(groups[id%procs], id)
	}

	type exit struct {
		i   int
		err error
	}
	outs := make([]bytes.Buffer, procs)
	exits := make(chan exit, procs)
	for i, ids := range groups {
		wj := j
		wj.IDs = ids
		wj.Procs = procs
		in, err := json.Marshal(wj)
		if err != nil {
			return partial{}, err
		}
		cmd := exec.CommandContext(ctx, cfg.WorkerCmd[0], cfg.WorkerCmd[1:]...)
		cmd.Stdin = bytes.NewReader(in)
		cmd.Stdout = &outs[i]
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return partial{}, fmt.Errorf("fleet: starting worker: %w", err)
		}
		go func() { exits <- exit{i, cmd.Wait()} }()
	}

	// The barrier: wait for every worker to be ready, then release them all.
	exited := 0
	var failed error
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := ctl.Get(ctx, j.NS+":ready").Int()
		if err == nil && n == procs {
			break
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return partial{}, fmt.Errorf("fleet: start barrier: %w", err)
		}
		select {
		case e := <-exits:
			exited++
			failed = fmt.Errorf("fleet: worker %d quit before the start: %v", e.i, e.err)
		case <-tick.C:
		case <-ctx.Done():
			return partial{}, fmt.Errorf("fleet: workers not ready: %w", ctx.Err())
		}
		if failed != nil {
			return partial{}, failed
		}
	}
	if err := ctl.Publish(ctx, j.NS+":start", "go").Err(); err != nil {
		return partial{}, fmt.Errorf("fleet: start barrier: %w", err)
	}

	for exited < procs {
		e := <-exits
		exited++
		if e.err != nil && failed == nil {
			failed = fmt.Errorf("fleet: worker %d: %w", e.i, e.err)
		}
	}
	if failed != nil {
		return partial{}, failed
	}
	var p partial
	for i := range outs {
		var q partial
		if err := json.Unmarshal(outs[i].Bytes(), &q); err != nil {
			return partial{}, fmt.Errorf("fleet: worker %d sent no result: %w", i, err)
		}
		p.merge(q)
	}
	return p, nil
}

// ServeWorker is the body of a worker process: it reads a job from in, runs
// its nodes once every worker is ready, and writes their results to out.
func ServeWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	var j job
	if err := json.NewDecoder(in).Decode(&j); err != nil {
		return fmt.Errorf("fleet: reading job: %w", err)
	}
	ctl := redis.NewClient(&redis.Options{Addr: j.Addr, PoolSize: 4})
	defer ctl.Close()
	var g gate = noGate{}
	if j.Scenario != RedisDown {
		herd := 0
		for _, id := range j.IDs {
			herd += j.share(id)
		}
		g = newRedisGate(herd, ctl, j.NS+":arrived", j.Procs)
	}
	w := &watch{}
	stop := flushAnswered(ctx, ctl, j.NS+":answered", w)
	p, err := runLocal(ctx, j, j.IDs, redisBarrier{ctl, j.NS}, &redisClaim{rdb: ctl, key: j.NS + ":crash"}, g, w)
	stop()
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(p)
}

// redisBarrier is the worker's side of the start barrier.
type redisBarrier struct {
	rdb *redis.Client
	ns  string
}

func (b redisBarrier) wait(ctx context.Context) error {
	sub := b.rdb.Subscribe(ctx, b.ns+":start")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription is live
		return fmt.Errorf("fleet: start barrier: %w", err)
	}
	if err := b.rdb.Incr(ctx, b.ns+":ready").Err(); err != nil {
		return fmt.Errorf("fleet: start barrier: %w", err)
	}
	if _, err := sub.ReceiveMessage(ctx); err != nil {
		return fmt.Errorf("fleet: start barrier: %w", err)
	}
	return nil
}

// redisClaim picks the crashing load across processes with SET NX.
type redisClaim struct {
	rdb  *redis.Client
	key  string
	gone atomic.Bool // someone has it: no need to ask again
}

func (c *redisClaim) claim(ctx context.Context) bool {
	if c.gone.Load() {
		return false
	}
	won, err := c.rdb.SetNX(ctx, c.key, "1", 10*time.Minute).Result()
	if err != nil || !won {
		c.gone.Store(true)
		return false
	}
	return true
}
