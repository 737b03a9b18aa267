// Package buildinfo holds the version stamped into kanade binaries at build
// time:
//
//	go build -ldflags "-X github.com/kanade-project/kanade/internal/buildinfo.Version=1.2.3" ./cmd/kanade-agent
//
// The self-updater compares it with the fleet's target_version, so a binary
// built without the flag reports "dev", which never equals a release.
package buildinfo

// Version is set with -ldflags -X; it must stay a plain string variable for
// the linker to rewrite it.
var Version = "dev"

// FaultInjection is empty in every real build. Test builds set it with
// -ldflags -X to make a binary misbehave on purpose (for example
// "exit-after-boot-check", a version that never becomes healthy), so that
// rollback is proven with real binaries. It cannot be changed at run time.
var FaultInjection = ""
