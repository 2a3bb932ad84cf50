// Command bb-launch makes a plan real on the Docker engine: it builds the
// images, starts the egress sidecar and the agent, and attaches the
// terminal; its subcommands list, attach, exec in, stop, resume and reload
// bottles.
package main

import (
	"os"

	"github.com/bb-bottles/bb/lib/cli"
)

func main() { os.Exit(cli.Main(newApp())) }
