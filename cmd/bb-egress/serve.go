package main

import (
	"errors"

	ucli "github.com/urfave/cli/v2"
)

// serveCommand is replaced by the sidecar's real serve command.
func serveCommand() *ucli.Command {
	return &ucli.Command{Name: "serve", Usage: "run the egress sidecar",
		Action: func(*ucli.Context) error { return errors.New("not implemented yet") }}
}
