package redistest

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// dieWithParent makes the kernel kill redis-server when the test binary
// dies without running its cleanups (a go test timeout, a SIGKILL), so no
// server outlives the tests that started it.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// goStderr opens the standard error of the go command that started this
// test binary. It returns nil when the parent is not the go command (the
// binary was run by hand, so its own stderr is seen), or when go's standard
// error is a regular file: go writes there at its own offset and would
// overwrite a note appended through a second descriptor.
func goStderr() *os.File {
	proc := "/proc/" + strconv.Itoa(os.Getppid())
	comm, err := os.ReadFile(proc + "/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "go" {
		return nil
	}
	fi, err := os.Stat(proc + "/fd/2")
	if err != nil || fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.OpenFile(proc+"/fd/2", os.O_WRONLY, 0)
	if err != nil {
		return nil
	}
	return f
}
