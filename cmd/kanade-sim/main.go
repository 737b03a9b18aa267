// Command kanade-sim runs a simulated fleet of kanade agents against a
// broker. See internal/sim.
package main

import (
	"os"

	"github.com/kanade-project/kanade/internal/sim"
)

func main() { os.Exit(sim.Main(os.Args[1:], os.Stdout, os.Stderr)) }
