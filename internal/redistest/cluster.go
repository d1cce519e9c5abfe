package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterTimeout bounds creating the cluster and waiting until every node
// reports it healthy.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of three masters and no replicas, started by
// [StartCluster]. Its nodes are killed when the test that started it ends.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts three redis-server nodes in cluster mode on free
// ports of 127.0.0.1, each with its own temporary directory, joins them
// with redis-cli --cluster create (the hash slots split evenly), and waits
// until every node reports cluster_state:ok.
//
// Without redis-server or redis-cli on PATH the test is skipped, or fails
// when the environment has CI=true.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin := requireBinary(t, "redis-server")
	cli := requireBinary(t, "redis-cli")

	// A running node holds its port and bus port, so the next node's pick
	// cannot collide with them.
	c := &Cluster{}
	for range 3 {
		c.nodes = append(c.nodes, startNode(t, bin, true, nil))
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, n := range c.nodes {
		if err := waitClusterOK(ctx, n.Addr()); err != nil {
			t.Fatalf("redistest: cluster node %s: %v\nredis-cli said:\n%s", n.Addr(), err, out)
		}
	}
	return c
}

// waitClusterOK polls CLUSTER INFO on addr until it reports
// cluster_state:ok or ctx ends.
func waitClusterOK(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1})
	defer c.Close()
	var info string
	var err error
	for {
		info, err = c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("CLUSTER INFO: %w", err)
			}
			return fmt.Errorf("cluster_state not ok:\n%s", info)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Addrs returns the host:port of each node.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Client returns a new cluster client with connection pools of its own,
// closed when the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}
