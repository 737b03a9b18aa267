//go:build !linux && !windows

package inventory

import (
	"context"
	"runtime"

	"github.com/kanade-project/kanade/internal/wire"
)

type unsupported struct{}

func newPlatform(Sources) Collector { return unsupported{} }

func note() []string { return []string{"inventory is not implemented on " + runtime.GOOS} }

func (unsupported) Hardware(context.Context) wire.Hardware { return wire.Hardware{Notes: note()} }
func (unsupported) OS(context.Context) wire.OSInfo         { return wire.OSInfo{Notes: note()} }
func (unsupported) Network(context.Context) wire.Network   { return wire.Network{Notes: note()} }
func (unsupported) Software(context.Context) wire.Software {
	return wire.Software{Notes: note()}
}
