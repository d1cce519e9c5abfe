package fleet

import "io"

// WriteSVG writes a chart of the results.
func WriteSVG(w io.Writer, s Setting, results []Result) error { return nil }
