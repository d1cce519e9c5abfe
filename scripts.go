package stampede

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

//go:embed lock.lua
var lockSrc string

//go:embed fill.lua
var fillSrc string

//go:embed write.lua
var writeSrc string

var (
	lockScript  = redis.NewScript(lockSrc)
	fillScript  = redis.NewScript(fillSrc)
	writeScript = redis.NewScript(writeSrc)
)

//go:embed extend.lua
var extendSrc string

//go:embed release.lua
var releaseSrc string

var (
	extendScript  = redis.NewScript(extendSrc)
	releaseScript = redis.NewScript(releaseSrc)
)

//go:embed lock_obtain.lua
var lockObtainSrc string

//go:embed lock_ttl.lua
var lockTTLSrc string

//go:embed lock_holder.lua
var lockHolderSrc string

//go:embed lock_runonce.lua
var lockRunOnceSrc string

//go:embed lock_done.lua
var lockDoneSrc string

var (
	lockObtainScript  = redis.NewScript(lockObtainSrc)
	lockTTLScript     = redis.NewScript(lockTTLSrc)
	lockHolderScript  = redis.NewScript(lockHolderSrc)
	lockRunOnceScript = redis.NewScript(lockRunOnceSrc)
	lockDoneScript    = redis.NewScript(lockDoneSrc)
)
