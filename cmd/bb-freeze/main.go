// Command bb-freeze snapshots bottles: it commits a bottle's container
// state to an image that bb resume boots, lists the snapshots and removes
// them. It is safe to run from cron.
package main

import (
	"os"

	"github.com/bb-bottles/bb/lib/cli"
)

func main() { os.Exit(cli.Main(newApp())) }
