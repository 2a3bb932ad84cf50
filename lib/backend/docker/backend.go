package docker

import (
	"context"
	"io"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
)

// Driver registers the Docker backend: it connects to the engine the
// environment names (DOCKER_HOST and friends).
var Driver = backend.Driver{Name: names.Docker, Open: func(ctx context.Context, c backend.Config) (backend.Backend, error) {
	// bb's own tests run the commands as programs; what those make is
	// labelled as theirs, so that they sweep it (and nothing else).
	if run := c.Env(TestRunEnv); run != "" {
		AddLabels(map[string]string{names.LabelTest: "1", names.LabelTestRun: run})
	}
	api, err := Connect(ctx)
	if err != nil {
		return nil, err
	}
	return New(api), nil
}}

// TestRunEnv, when set (by bb's own tests), labels everything the backend
// makes bb.test=1 and bb.test.run=<its value>.
const TestRunEnv = "BB_TEST_RUN"

// Backend is the Docker backend, on one engine. It has every optional
// capability: Attacher, Reloader, Restarter, Freezable, ImageChecker.
type Backend struct {
	api Engine
}

var (
	_ backend.Backend      = (*Backend)(nil)
	_ backend.Attacher     = (*Backend)(nil)
	_ backend.Reloader     = (*Backend)(nil)
	_ backend.Restarter    = (*Backend)(nil)
	_ backend.Freezable    = (*Backend)(nil)
	_ backend.ImageChecker = (*Backend)(nil)
)

// New returns the Docker backend on api.
func New(api Engine) *Backend { return &Backend{api: api} }

// Name is "docker".
func (b *Backend) Name() string { return names.Docker }

// Close closes the engine client.
func (b *Backend) Close() error {
	if c, ok := b.api.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Prepare checks the plan's docker section and returns the Docker steps of
// the launch l.
func (b *Backend) Prepare(l *backend.Launching) (backend.LaunchSteps, error) {
	if err := checkPlan(l.Plan); err != nil {
		return nil, err
	}
	return &launch{Launching: l, api: b.api, d: l.Plan.Docker}, nil
}

// checkPlan checks the plan's docker section: backend.CheckPlan has
// checked the rest.
func checkPlan(p *plan.Plan) error {
	d := p.Docker
	if d == nil {
		return exit.Usagef("plan has no docker section")
	}
	for field, v := range map[string]string{"agent_container": d.AgentContainer, "sidecar_container": d.SidecarContainer,
		"internal_network": d.InternalNetwork, "egress_network": d.EgressNetwork} {
		if v == "" {
			return exit.Usagef("plan docker.%s is empty", field)
		}
	}
	if d.Labels[names.LabelSlug] != p.Slug || d.AgentLabels[names.LabelSlug] != p.Slug || d.SidecarLabels[names.LabelSlug] != p.Slug {
		return exit.Usagef("plan docker labels: %s is not the slug %s", names.LabelSlug, p.Slug)
	}
	return checkSecurityOpt(d.SecurityOpt)
}

// Status lists the bottle's containers (and, when it has none, its
// networks).
func (b *Backend) Status(ctx context.Context, slug string) (backend.Status, error) {
	cs, err := bottleContainers(ctx, b.api, slug, "")
	if err != nil {
		return backend.Status{}, err
	}
	s := backend.Status{Agent: backend.StatusMissing, Leftovers: len(cs) > 0}
	for _, c := range cs {
		running := c.State == container.StateRunning || c.State == container.StatePaused
		switch c.Labels[names.LabelRole] {
		case names.RoleAgent:
			if s.AgentName == "" || running {
				s.Agent, s.ExitCode = backend.StatusStopped, exitCode(c.Status)
				if running {
					s.Agent = backend.StatusRunning
				}
				if len(c.Names) > 0 {
					s.AgentName = trimSlash(c.Names[0])
				}
			}
		case names.RoleEgress:
			s.SidecarRunning = s.SidecarRunning || running
		}
	}
	if !s.Leftovers {
		ns, err := bottleNetworks(ctx, b.api, slug)
		if err != nil {
			return backend.Status{}, err
		}
		s.Leftovers = len(ns) > 0
	}
	return s, nil
}

// Stop removes the bottle's containers, agent first, then its networks.
func (b *Backend) Stop(ctx context.Context, slug string) error { return Stop(ctx, b.api, slug) }

// Exec runs cmd in the bottle's running agent (Exec).
func (b *Backend) Exec(ctx context.Context, slug string, cmd []string, stdout, stderr io.Writer) (int, error) {
	return Exec(ctx, b.api, slug, cmd, stdout, stderr)
}

// Attach opens the terminal of the bottle's running agent.
func (b *Backend) Attach(ctx context.Context, slug string) (backend.Session, error) {
	id, running, err := FindContainer(ctx, b.api, slug, names.RoleAgent)
	if err != nil {
		return nil, err
	}
	if !running {
		return nil, exit.Usage(&backend.NotRunningError{Slug: slug}, "start it with 'bb-launch resume "+slug+"'")
	}
	return OpenAttach(ctx, b.api, id)
}

// Reload sends the bottle's sidecar SIGHUP (Reload).
func (b *Backend) Reload(ctx context.Context, slug string) error { return Reload(ctx, b.api, slug) }

// Restart starts the bottle's stopped agent container again (Restart).
func (b *Backend) Restart(ctx context.Context, o backend.LaunchOptions) (*backend.Record, error) {
	return Restart(ctx, b.api, o)
}

// Freezer commits the bottle's paused container (Freezer).
func (b *Backend) Freezer() freeze.Freezer { return &Freezer{API: b.api} }

// ImageExists reports whether the engine has the image ref.
func (b *Backend) ImageExists(ctx context.Context, ref string) (bool, error) {
	return ImageExists(ctx, b.api, ref)
}

// exitCode reads an exited container's status from the engine's summary of
// it ("Exited (137) 2 minutes ago"); -1 when it says none.
func exitCode(status string) int {
	rest, ok := strings.CutPrefix(status, "Exited (")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(rest[:max(0, strings.IndexByte(rest, ')'))])
	if err != nil {
		return -1
	}
	return n
}
