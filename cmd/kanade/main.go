// Command kanade is the operator CLI and the server. See internal/cli.
package main

import (
	"os"

	"github.com/kanade-project/kanade/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
