package redistest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recordingTB stands in for the test a helper was given, recording instead
// of stopping it.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func (r *recordingTB) Skip(args ...any) { r.skip = fmt.Sprint(args...) }

// withNotes makes requireBinary print its notes into the returned buffer for
// the rest of the test.
func withNotes(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	saved := skipNotes
	skipNotes = &notifier{open: func() (io.Writer, func()) { return &buf, func() {} }}
	t.Cleanup(func() { skipNotes = saved })
	return &buf
}

func TestRequireBinaryMissingSkipsWithOneNote(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CI", "")
	notes := withNotes(t)

	for range 3 {
		r := &recordingTB{TB: t}
		if got := requireBinary(r, "redis-server"); got != "" {
			t.Fatalf("requireBinary = %q; want empty", got)
		}
		if r.fatal != "" || !strings.Contains(r.skip, "redis-server not found on PATH") {
			t.Fatalf("fatal = %q, skip = %q; want a skip naming redis-server", r.fatal, r.skip)
		}
	}
	note := notes.String()
	if n := strings.Count(note, "is not on PATH"); n != 1 {
		t.Fatalf("%d notes for three skipped tests; want 1:\n%s", n, note)
	}
	for _, want := range []string{
		"github.com/stampede-go/stampede/internal/redistest: redis-server is not on PATH",
		"need a real redis-server (alone or as a Cluster) are SKIPPED",
		"apt-get install redis-server",
		"bash .ci/run",
		"CI=true",
	} {
		if !strings.Contains(note, want) {
			t.Errorf("note lacks %q:\n%s", want, note)
		}
	}

	// A missing redis-cli skips only the Cluster tests, and says so once.
	r := &recordingTB{TB: t}
	requireBinary(r, "redis-cli")
	requireBinary(r, "redis-cli")
	cli := strings.TrimPrefix(notes.String(), note)
	if n := strings.Count(cli, "is not on PATH"); n != 1 || !strings.Contains(cli, "need a real Redis Cluster are SKIPPED") || !strings.Contains(cli, "redis-tools") {
		t.Fatalf("notes for a missing redis-cli:\n%s\nwant one naming the Cluster tests and redis-tools", cli)
	}
}

func TestRequireBinaryMissingFailsUnderCI(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CI", "true")
	notes := withNotes(t)

	r := &recordingTB{TB: t}
	requireBinary(r, "redis-server")
	if r.skip != "" || !strings.Contains(r.fatal, "CI=true") {
		t.Fatalf("fatal = %q, skip = %q; want a failure naming CI=true and no skip", r.fatal, r.skip)
	}
	if notes.Len() != 0 {
		t.Fatalf("a failed test printed a skip note:\n%s", notes)
	}
}

func TestRequireBinaryFound(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "redis-server"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	t.Setenv("CI", "true")
	notes := withNotes(t)

	r := &recordingTB{TB: t}
	if got := requireBinary(r, "redis-server"); !strings.HasSuffix(got, "/redis-server") || r.fatal != "" || r.skip != "" {
		t.Fatalf("requireBinary = %q (fatal %q, skip %q); want the path", got, r.fatal, r.skip)
	}
	if notes.Len() != 0 {
		t.Fatalf("note printed although nothing was skipped:\n%s", notes)
	}
}
