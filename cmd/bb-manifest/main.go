// Command bb-manifest reads the manifest index (bb.yaml, or a directory of
// agents and bottles) and prints one agent's Manifest as JSON, or the list
// of agents.
package main

import (
	"os"

	"github.com/bb-bottles/bb/lib/cli"
)

func main() { os.Exit(cli.Main(newApp())) }
