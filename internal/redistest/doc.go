// Package redistest starts throwaway Redis servers for tests: a real
// redis-server, alone ([Start]) or as a three-master cluster
// ([StartCluster]), on free loopback ports, or an in-process miniredis
// ([Mini]). Everything it starts is stopped through t.Cleanup.
//
// Tests that need a real server are skipped when redis-server is not on
// PATH, except when the environment has CI=true: there a missing server
// fails the test, so that CI cannot turn green by skipping the tests that
// count loads against a real Redis.
package redistest
