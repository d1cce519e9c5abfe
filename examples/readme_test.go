package examples

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReadme runs every command README.md shows and compares what it prints
// with the output the README quotes for it ("$ command", then its lines),
// line by line, so that the two cannot drift apart. Each runs as the README gives it, with the embedded
// Redis. The README's `go test` line is the run this test is part of, and
// `cd examples` is where it runs.
func TestReadme(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs every example")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	cmds := readmeCommands(string(readme))
	if len(cmds) == 0 {
		t.Fatal("found no command in README.md")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		args := strings.Fields(c.line)
		switch {
		case c.line == "cd examples" || (len(args) > 1 && args[0] == "go" && args[1] == "test"):
			continue
		case args[0] != "go" || args[1] != "run":
			t.Errorf("README.md shows %q, which this test does not know how to run; teach it", c.line)
			continue
		}
		t.Run(strings.TrimPrefix(args[2], "./"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, goBin, args[1:]...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", c.line, err, &stdout, &stderr)
			}
			if c.output == nil {
				// Every example's output is quoted; a parser that found
				// none would otherwise pass without comparing anything.
				t.Fatalf("README.md shows %q but quotes no output for it", c.line)
			}
			got := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
			if diff := compareOutput(c.output, got, varying[c.line]); diff != "" {
				t.Errorf("%s prints other lines than README.md quotes:\n%s\nit printed:\n%s", c.line, diff, &stdout)
			}
		})
	}
}

// command is a command shown in the README and, when the README quotes
// what it prints, that output (nil otherwise).
type command struct {
	line   string
	output []string
}

// readmeCommands returns the commands in the README's code blocks in order,
// each once: in a block whose lines start with "$ " those lines are
// commands and the lines after each its output; in any other block every
// line is a command, less a trailing "# comment". A command shown both ways
// keeps the output.
func readmeCommands(md string) []command {
	var (
		cmds    []command
		inBlock bool
		block   []string
	)
	for line := range strings.Lines(md) {
		line = strings.TrimRight(line, " \n")
		if strings.HasPrefix(line, "```") {
			if inBlock {
				cmds = addCommands(cmds, block)
			}
			inBlock, block = !inBlock, nil
			continue
		}
		if inBlock {
			block = append(block, line)
		}
	}
	return cmds
}

func addCommands(cmds []command, block []string) []command {
	add := func(c command) {
		i := slices.IndexFunc(cmds, func(d command) bool { return d.line == c.line })
		switch {
		case i < 0:
			cmds = append(cmds, c)
		case c.output != nil:
			cmds[i].output = c.output
		}
	}
	if !slices.ContainsFunc(block, func(l string) bool { return strings.HasPrefix(l, "$ ") }) {
		for _, l := range block {
			l, _, _ = strings.Cut(l, "#")
			if l = strings.TrimSpace(l); l != "" {
				add(command{line: l})
			}
		}
		return cmds
	}
	var c *command
	for _, l := range block {
		if cmd, ok := strings.CutPrefix(l, "$ "); ok {
			if c != nil {
				add(*c)
			}
			c = &command{line: cmd, output: []string{}}
			continue
		}
		if c != nil {
			c.output = append(c.output, l)
		}
	}
	if c != nil {
		add(*c)
	}
	return cmds
}

// rewrite replaces a part of an example's output that differs from run to
// run with words that hold for every run.
type rewrite struct {
	re  *regexp.Regexp
	fn  func(m []string) string // m: the match and its groups
	why string
}

// apply rewrites every match of r in l.
func (r rewrite) apply(l string) string {
	var b strings.Builder
	last := 0
	for _, loc := range r.re.FindAllStringSubmatchIndex(l, -1) {
		m := make([]string, len(loc)/2)
		for i := range m {
			if loc[2*i] >= 0 {
				m[i] = l[loc[2*i]:loc[2*i+1]]
			}
		}
		b.WriteString(l[last:loc[0]])
		b.WriteString(r.fn(m))
		last = loc[1]
	}
	b.WriteString(l[last:])
	return b.String()
}

// varying lists, per command, the parts of its output that change from run
// to run. They are rewritten the same way in the README's line and in the
// program's before the two are compared; everything else must be equal.
var varying = map[string][]rewrite{
	"go run ./cronlock": {
		{
			re: regexp.MustCompile(`pid \d+(\) +)?`),
			fn: func(m []string) string {
				if m[1] != "" {
					return "pid <pid>) " // the column after it starts where the pid's digits end
				}
				return "pid <pid>"
			},
			why: "instance 1 is a new process each run",
		},
		{
			re:  regexp.MustCompile(`(for |^ +)(\d+(?:\.\d+)?m?s)( later|$)`),
			fn:  func(m []string) string { return m[1] + roundSecond(m[2]) + m[3] },
			why: "the lease's remaining time is measured to 100 ms; compared to the second",
		},
		{
			re: regexp.MustCompile(`instance ([2-5]), finished( +)skipped: ([2-5]) ([2-5]) ([2-5])$`),
			fn: func(m []string) string {
				ns := []string{m[1], m[3], m[4], m[5]}
				slices.Sort(ns)
				if len(slices.Compact(ns)) != 4 {
					return m[0] // an instance twice: let the comparison fail
				}
				return "instance <one of 2-5>, finished" + m[2] + "skipped: <the other three>"
			},
			why: "any of the instances still alive may win trigger 3",
		},
	},
	"go run ./cart": {
		{
			re:  regexp.MustCompile(`cart 42: \[(socks|shoes)\]`),
			fn:  func([]string) string { return "cart 42: [socks or shoes]" },
			why: "without a lock, either worker's write may land last",
		},
		{
			re:  regexp.MustCompile(`cart 42: \[(socks shoes|shoes socks)\]`),
			fn:  func([]string) string { return "cart 42: [socks and shoes]" },
			why: "either worker may take the lock first",
		},
	},
}

// roundSecond rounds a duration such as "1.9s" to whole seconds ("2s");
// anything else is returned as it is.
func roundSecond(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	return d.Round(time.Second).String()
}

// compareOutput compares the lines a README quotes with those a program
// printed, after rewriting the parts that vary, and describes the first
// differences ("" when there are none).
func compareOutput(want, got []string, rw []rewrite) string {
	norm := func(l string) string {
		l = strings.TrimRight(l, " ")
		for _, r := range rw {
			l = r.apply(l)
		}
		return l
	}
	var diff strings.Builder
	for i := range max(len(want), len(got)) {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if nw, ng := norm(w), norm(g); nw != ng {
			fmt.Fprintf(&diff, "line %d:\n  README:  %q\n  printed: %q\n", i+1, w, g)
			if nw != w || ng != g {
				fmt.Fprintf(&diff, "  compared as %q\n           vs %q\n", nw, ng)
			}
			for _, r := range rw {
				if r.re.MatchString(w) || r.re.MatchString(g) {
					fmt.Fprintf(&diff, "  (%s allowed: %s)\n", r.re, r.why)
				}
			}
		}
	}
	if len(want) != len(got) {
		fmt.Fprintf(&diff, "README quotes %d lines, the program printed %d\n", len(want), len(got))
	}
	return diff.String()
}
