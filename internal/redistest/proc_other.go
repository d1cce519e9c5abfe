//go:build !linux

package redistest

import (
	"os"
	"os/exec"
)

// dieWithParent does nothing where the kernel offers no parent-death
// signal; the servers are still stopped by t.Cleanup.
func dieWithParent(*exec.Cmd) {}

// goStderr returns nil: without /proc there is no portable way to reach the
// go command's standard error, so notes go to the test binary's own.
func goStderr() *os.File { return nil }
