//go:build !linux && !windows

package hostinfo

func machineID() string { return "" }
