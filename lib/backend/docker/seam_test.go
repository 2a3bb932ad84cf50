package docker

import (
	"context"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/routes"
)

// The tests of this package, the escape suite among them, launch Docker
// bottles through the backend-neutral launch with these names, as they did
// when the launch lived here.

const (
	LabelSlug    = names.LabelSlug
	LabelRole    = names.LabelRole
	LabelTest    = names.LabelTest
	LabelTestRun = names.LabelTestRun
	LabelLaunch  = names.LabelLaunch
	RoleAgent    = names.RoleAgent
	RoleEgress   = names.RoleEgress
	LaunchFile   = backend.LaunchFile
)

type (
	LaunchOptions = backend.LaunchOptions
	Record        = backend.Record
	StepError     = backend.StepError
	Launched      = backend.Launched
)

// Launch launches o on the Docker backend on api.
func Launch(ctx context.Context, api Engine, o LaunchOptions) (*Record, error) {
	return backend.Launch(ctx, New(api), o)
}

func writeRoutes(path string, rs []routes.Route) error { return backend.WriteRoutes(path, rs) }

// openOn opens the Docker backend on c, which its Close leaves open: the
// tests share one engine client.
func openOn(c Engine) backend.Opener {
	return func(context.Context, string) (backend.Backend, error) { return New(struct{ Engine }{c}), nil }
}
