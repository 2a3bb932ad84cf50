package main

import ucli "github.com/urfave/cli/v2"

func newApp() *ucli.App {
	return &ucli.App{
		Name:            "bb-egress",
		Usage:           "the egress sidecar of a bottle, and its routes and audit log",
		HideHelpCommand: true,
		Commands: []*ucli.Command{
			serveCommand(),
			routesCommand(),
			applyCommand(),
			allowCommand(),
			requestsCommand(),
			logCommand(),
			guestCommand(),
		},
	}
}
