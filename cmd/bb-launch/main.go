// Command bb-launch makes a plan real on the Docker engine: it builds the
// images, starts the egress sidecar and the agent, and attaches the
// terminal; its subcommands list, attach, exec in, stop, resume and reload
// bottles.
package main

import (
	"os"
	"syscall"

	"github.com/bb-bottles/bb/lib/cli"
)

// A closed terminal (SIGHUP) cancels a launch like Ctrl-C: what it made so
// far is removed.
func main() { os.Exit(cli.Main(newApp(), syscall.SIGHUP)) }
