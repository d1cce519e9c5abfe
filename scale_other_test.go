//go:build !unix

package stampede

import "time"

// processCPU is not measured here.
func processCPU() time.Duration { return 0 }
