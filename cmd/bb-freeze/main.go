// Command bb-freeze snapshots bottles: it commits a bottle's container
// state to an image that bb resume boots, lists the snapshots and removes
// them. It is safe to run from cron.
package main

import (
	"os"
	"syscall"

	"github.com/bb-bottles/bb/lib/cli"
)

// A closed terminal (SIGHUP) cancels a commit like Ctrl-C, so that a paused
// agent is resumed.
func main() { os.Exit(cli.Main(newApp(), syscall.SIGHUP)) }
