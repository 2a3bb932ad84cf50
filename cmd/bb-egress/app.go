package main

import ucli "github.com/urfave/cli/v2"

func newApp() *ucli.App {
	return &ucli.App{
		Name:     "bb-egress",
		Usage:    "the egress sidecar of a bottle, and its routes and audit log",
		Commands: []*ucli.Command{serveCommand()},
	}
}
