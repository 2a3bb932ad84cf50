// Command bb-canary mints bottle canaries, scans text for known secrets,
// and checks a bottle's audit log for a tripped canary.
package main

import (
	"os"

	"github.com/bb-bottles/bb/lib/cli"
)

func main() { os.Exit(cli.Main(newApp())) }
