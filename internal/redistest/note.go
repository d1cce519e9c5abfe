package redistest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
)

// notifier prints each note at most once per test binary.
type notifier struct {
	// open returns where notes go and a function that closes it.
	open func() (io.Writer, func())

	mu   sync.Mutex      // guards sent
	sent map[string]bool // keys of the notes already printed
}

// skipNotes tells the person running the tests which real-Redis tests were
// skipped and how to run them: once per test binary and missing program,
// not once per test.
var skipNotes = &notifier{open: console}

// once prints text unless a note with the same key was printed before.
func (n *notifier) once(key, text string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sent[key] {
		return
	}
	if n.sent == nil {
		n.sent = make(map[string]bool)
	}
	n.sent[key] = true
	w, closeW := n.open()
	defer closeW()
	_, _ = io.WriteString(w, text)
}

// console returns where a note reaches the person running the tests. go test
// shows the output of a package that passed only with -v, so a note written
// to the test binary's own stderr would go unseen; where the go command ran
// the binary, the note goes to go's own standard error instead.
func console() (io.Writer, func()) {
	if f := goStderr(); f != nil {
		return f, func() { _ = f.Close() }
	}
	return os.Stderr, func() {}
}

// skipNote is the note printed when name is missing from PATH.
func skipNote(name string) string {
	what, install := "a real redis-server (alone or as a Cluster)", "redis-server (Debian, Ubuntu: apt-get install redis-server)"
	if name == "redis-cli" {
		what, install = "a real Redis Cluster", "redis-cli (Debian, Ubuntu: apt-get install redis-tools)"
	}
	return fmt.Sprintf("redistest: %s: %s is not on PATH, so the tests that need %s are SKIPPED (go test -v names them).\n"+
		"  To run them, install %s and run the tests again, or run bash .ci/run, which installs it.\n"+
		"  With CI=true these tests fail instead of skipping.\n",
		testedPackage(), name, what, install)
}

// testedPackage returns the import path of the package under test.
func testedPackage() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Path != "" {
		return strings.TrimSuffix(bi.Path, ".test")
	}
	return strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
}
