//go:build !linux

package main

import (
	"os/exec"
	"time"
)

func dieWithParent(*exec.Cmd) {}

// processCPU is not measured outside Linux; the CPU column reads 0.
func processCPU() time.Duration { return 0 }
