// Command bb-egress is the egress sidecar (serve) and the host-side commands
// on a bottle's routes and audit log.
package main

import (
	"os"

	"github.com/bb-bottles/bb/lib/cli"
)

func main() { os.Exit(cli.Main(newApp())) }
