package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progress writes a line to stderr every second while something runs:
// what runs, its phase, requests answered so far and time elapsed.
type progress struct {
	w    io.Writer
	done atomic.Int64 // requests answered in the current run

	mu    sync.Mutex // guards the fields below
	label string
	ph    string
	total int
	began time.Time
	stop  chan struct{}
	ended chan struct{}
}

func newProgress(w io.Writer) *progress { return &progress{w: w} }

// start begins a step of total requests (0: not a herd).
func (p *progress) start(label string, total int) {
	p.end()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done.Store(0)
	p.label, p.ph, p.total, p.began = label, "", total, time.Now()
	p.stop, p.ended = make(chan struct{}), make(chan struct{})
	go p.tick(p.stop, p.ended)
}

func (p *progress) phase(format string, a ...any) {
	p.mu.Lock()
	p.ph = fmt.Sprintf(format, a...)
	p.mu.Unlock()
}

// end stops the ticker of the current step, if any.
func (p *progress) end() {
	p.mu.Lock()
	stop, ended := p.stop, p.ended
	p.stop, p.ended = nil, nil
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		<-ended
	}
}

// printf writes a line of its own.
func (p *progress) printf(format string, a ...any) {
	fmt.Fprintf(p.w, "peers: "+format+"\n", a...)
}

func (p *progress) tick(stop <-chan struct{}, ended chan<- struct{}) {
	defer close(ended)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		line := fmt.Sprintf("%s: %s", p.label, p.ph)
		if p.total > 0 {
			line += fmt.Sprintf(", %d/%d answered", p.done.Load(), p.total)
		}
		line += fmt.Sprintf(", %.1fs", time.Since(p.began).Seconds())
		p.mu.Unlock()
		p.printf("%s", line)
	}
}
