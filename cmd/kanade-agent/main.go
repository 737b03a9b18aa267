// Command kanade-agent is the kanade endpoint daemon. See internal/agent.
package main

import (
	"os"

	"github.com/kanade-project/kanade/internal/agentcmd"
)

func main() { os.Exit(agentcmd.Main(os.Args[1:], os.Stdout, os.Stderr)) }
