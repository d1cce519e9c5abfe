package stampede

import "runtime"

func runtimeGoexit() { runtime.Goexit() }
