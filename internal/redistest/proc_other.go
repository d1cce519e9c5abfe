//go:build !linux

package redistest

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death
// signal; the servers are still stopped by t.Cleanup.
func dieWithParent(*exec.Cmd) {}
