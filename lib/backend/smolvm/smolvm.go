package smolvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
)

// Driver registers the backend. Opening it runs nothing: smolvm is looked
// for when a bottle of it is first touched.
var Driver = backend.Driver{Name: names.Smolvm, Open: func(_ context.Context, c backend.Config) (backend.Backend, error) {
	return &Backend{store: c.Store, env: c.Env, environ: c.Environ}, nil
}}

// testLabels go on every machine in tests (bb.test and the test run), so
// that a test finds, and sweeps, its own.
var testLabels map[string]string

// AddLabels puts m on every machine this process creates: tests mark theirs.
func AddLabels(m map[string]string) { testLabels = m }

// Backend runs bottles as smolvm machines.
type Backend struct {
	store   *state.Store
	env     func(string) string
	environ func() []string

	once sync.Once
	t    *tool
	terr error
}

var (
	_ backend.Attacher     = (*Backend)(nil)
	_ backend.Restarter    = (*Backend)(nil)
	_ backend.Freezable    = (*Backend)(nil)
	_ backend.ImageChecker = (*Backend)(nil)
)

// Name is the backend's name.
func (b *Backend) Name() string { return names.Smolvm }

// Close does nothing: smolvm is a command, not a connection.
func (b *Backend) Close() error { return nil }

// errNoSmolvm is a smolvm that is not installed.
var errNoSmolvm = errors.New("smolvm is not installed")

// tool finds smolvm: $BB_SMOLVM, else smolvm on PATH.
func (b *Backend) tool() (*tool, error) {
	b.once.Do(func() {
		p := b.env(ToolEnv)
		if p == "" {
			p = "smolvm"
		}
		path, err := exec.LookPath(p)
		if err != nil {
			b.terr = exit.Backend(fmt.Errorf("%w: %w", errNoSmolvm, err),
				"install smolvm "+MinVersion.String()+" or later (curl -sSL https://smolmachines.com/install.sh | bash), or name it in "+ToolEnv)
			return
		}
		b.t = &tool{path: path, env: smolvmEnv(b.environ(), nil), v: &versionOnce{}}
	})
	return b.t, b.terr
}

// forPlan is the tool with the environment a plan's calls get: without
// the host variables the plan reads tokens from either.
func (b *Backend) forPlan(p *plan.Plan) (*tool, error) {
	t, err := b.tool()
	if err != nil {
		return nil, err
	}
	pt := &tool{path: t.path, env: smolvmEnv(t.env, p), v: t.v}
	if err := pt.checkVersion(context.Background()); err != nil {
		return nil, err
	}
	return pt, nil
}

// Prepare checks the plan's smolvm section and returns the smolvm steps of
// a launch. It checks the installed smolvm, which creates nothing.
func (b *Backend) Prepare(l *backend.Launching) (backend.LaunchSteps, error) {
	if err := checkPlan(l.Plan); err != nil {
		return nil, err
	}
	t, err := b.forPlan(l.Plan)
	if err != nil {
		return nil, err
	}
	return &launch{Launching: l, b: b, t: t, s: l.Plan.Smolvm}, nil
}

// Status reads the bottle's machines from `machine ls --json`. A smolvm
// that is not installed has nothing of it: the status is unknown, and
// bb-launch ls says so rather than failing.
func (b *Backend) Status(ctx context.Context, slug string) (backend.Status, error) {
	t, err := b.tool()
	if errors.Is(err, errNoSmolvm) {
		return backend.Status{Agent: backend.StatusUnknown, ExitCode: -1}, nil
	}
	if err != nil {
		return backend.Status{}, err
	}
	ms, err := t.machines(ctx)
	if err != nil {
		return backend.Status{}, err
	}
	bt := bottleOf(ms, slug)
	// A stopped machine's agent ended with the VM: its status is not known.
	s := backend.Status{Agent: backend.StatusMissing, ExitCode: -1, Leftovers: len(bt.all) > 0}
	if bt.agent != nil {
		s.AgentName = bt.agent.Name
		s.Agent = backend.StatusStopped
		if bt.agent.running() {
			s.Agent = backend.StatusRunning
		}
	}
	s.SidecarRunning = bt.sidecar != nil && bt.sidecar.running()
	return s, nil
}

// Stop deletes the bottle's machines (smolvm stops a running one first),
// the agent's first.
func (b *Backend) Stop(ctx context.Context, slug string) error {
	t, err := b.tool()
	if err != nil {
		return err
	}
	ms, err := t.machines(ctx)
	if err != nil {
		return err
	}
	bt := bottleOf(ms, slug)
	var errs []error
	for _, m := range bt.all {
		if err := t.run(ctx, nil, "machine", "delete", "--name", m.Name, "--force"); err != nil && !strings.Contains(err.Error(), "not found") {
			errs = append(errs, fmt.Errorf("deleting machine %s: %w", m.Name, err))
		}
	}
	return errors.Join(errs...)
}

// running returns the tool and the bottle's running agent machine, or a
// *NotRunningError.
func (b *Backend) running(ctx context.Context, slug string) (*tool, *machine, error) {
	t, err := b.tool()
	if err != nil {
		return nil, nil, err
	}
	ms, err := t.machines(ctx)
	if err != nil {
		return nil, nil, err
	}
	bt := bottleOf(ms, slug)
	if bt.agent == nil || !bt.agent.running() {
		// Not started here: smolvm's exec would boot a stopped machine,
		// without its sidecar's tokens.
		return nil, nil, exit.Usage(&backend.NotRunningError{Slug: slug}, "start it with 'bb-launch resume "+slug+"'")
	}
	return t, bt.agent, nil
}

// Exec runs cmd in the bottle's running agent machine: as the image's user
// (the agent's, provisioning checked), in its working folder and
// environment, with no input, output streamed. A command killed as the VM
// woke (exit 137 before it printed anything) is run once more, as smolvm
// can answer so for the first command after a machine resumed.
func (b *Backend) Exec(ctx context.Context, slug string, cmd []string, stdout, stderr io.Writer) (int, error) {
	t, m, err := b.running(ctx, slug)
	if err != nil {
		return 0, err
	}
	for try := 0; ; try++ {
		out, errw := &countingWriter{w: stdout}, &countingWriter{w: stderr}
		c := t.command(ctx, nil, append([]string{"machine", "exec", "--name", m.Name, "--stream", "--"}, cmd...)...)
		c.Stdout, c.Stderr = out, errw
		err := c.Run()
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return 0, exit.Backend(fmt.Errorf("running smolvm: %w", err))
		}
		if try == 0 && killedAsItWoke(c.Args[1:], c, int(out.n+errw.n)) {
			continue
		}
		return c.ProcessState.ExitCode(), nil
	}
}

// Attach opens a session with the running agent's terminal holder.
func (b *Backend) Attach(ctx context.Context, slug string) (backend.Session, error) {
	t, m, err := b.running(ctx, slug)
	if err != nil {
		return nil, err
	}
	s := &session{t: t, vm: m.Name, slug: slug}
	r, err := s.status(ctx)
	if err != nil {
		return nil, err
	}
	if !r.Running {
		why := "its agent is not running"
		if r.ExitCode != nil {
			why = fmt.Sprintf("its agent exited with status %d", *r.ExitCode)
		}
		return nil, exit.Usage(fmt.Errorf("bottle %s's machine runs, but %s", slug, why),
			fmt.Sprintf("'bb-launch stop %s' ends it; 'bb-launch resume %s' starts it again", slug, slug))
	}
	return s, nil
}

// ImageExists says whether ref is still there: a snapshot's file, or an
// agent image in the Docker engine.
func (b *Backend) ImageExists(ctx context.Context, ref string) (bool, error) {
	if isSnapshot(ref) {
		return (&Freezer{Dir: b.store.Dir}).Exists(ctx, ref)
	}
	return imageExists(ctx, ref)
}

// Freezer packs the bottles' stopped agent machines into snapshots.
func (b *Backend) Freezer() freeze.Freezer { return &Freezer{b: b, Dir: b.store.Dir} }
