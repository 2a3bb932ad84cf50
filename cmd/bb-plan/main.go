// Command bb-plan turns one agent's Manifest (what bb-manifest prints) into
// a Plan: the complete description of a bottle's launch, for bb-launch.
package main

import (
	"os"

	"github.com/bb-bottles/bb/lib/cli"
)

func main() { os.Exit(cli.Main(newApp())) }
