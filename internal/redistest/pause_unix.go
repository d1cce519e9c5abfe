//go:build unix

package redistest

import (
	"syscall"
	"testing"
)

// Pause stops the server process with SIGSTOP: connections stay open and
// nothing is answered, as when Redis hangs. Resume undoes it; Kill works on
// a paused server too, and the test's cleanup resumes it.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(syscall.SIGSTOP)
	t.Cleanup(func() { s.signal(syscall.SIGCONT) })
}

// Resume continues a server stopped by Pause.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		_ = s.proc.cmd.Process.Signal(sig)
	}
}
