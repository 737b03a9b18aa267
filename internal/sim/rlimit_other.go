//go:build !linux

package sim

// RaiseFileLimit does nothing here and reports 0 (unknown): the simulator
// and the benchmarks are meant for Linux, where the limit is raised.
func RaiseFileLimit() (uint64, error) { return 0, nil }
