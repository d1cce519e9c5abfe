//go:build !unix

package redistest

import "testing"

// Pause skips the test: stopping a process needs SIGSTOP.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	t.Skip("redistest: Pause needs SIGSTOP (unix only)")
}

// Resume does nothing where Pause cannot stop a server.
func (s *Server) Resume() {}
