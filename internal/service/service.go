// Package service runs the agent under the platform's service manager:
// the Windows Service Control Manager (service name KanadeAgent) or, on
// Linux, systemd/console with SIGTERM and SIGINT as the stop request.
//
// Run blocks until the agent's run function returns; a stop request from the
// service manager cancels the context given to it, and the exit code it
// returns is reported to the service manager so that recovery actions (exit
// 64 after a self-update) fire.
package service

import "context"

// Name is the Windows service name.
const Name = "KanadeAgent"

// RunFunc is the daemon body. It returns the process exit code.
type RunFunc func(ctx context.Context) int
