// Package macoscontainer holds the macos-container backend: bottles on
// Apple's container (github.com/apple/container), macOS's own way to run
// Linux, where every container is a lightweight virtual machine, driven
// through its CLI.
//
// It follows apple/container at release 1.2.2: the syntax of
// docs/command-reference.md (every option bb passes is in the table of
// internal/clispec, with the words of that document), docs/how-to.md
// (a host socket given to a container with --volume, as --ssh does), and
// the JSON the source encodes (Sources/ContainerResource: ManagedContainer,
// ImageResource, VolumeResource, printed by Output.renderJSON with sorted
// keys), which releases 1.0.0 and later share. It needs container 1.0.0 or
// later, and refuses to launch on anything older (exit 3).
//
// # The way out
//
// The agent's container has no network device: --network none (the
// source's NetworkClient.noNetworkName, in every release since 0.6.0) and
// --no-dns. Its one way out is a unix socket: the sidecar's bb-egress
// listens on one on its own root filesystem, the runtime publishes it on
// the Mac (--publish-socket), and relays that into the agent's container
// (--volume SOCKET:/bb/egress.sock), where the agent's init listens on
// 127.0.0.1:3128, bb.egress in its /etc/hosts, and passes each connection
// on (lib/guest). A process in the agent's machine can open no socket that
// leaves it: there is no interface to send on, DNS included; what remains
// is vsock to the runtime's own ports (the relays bb asked for, and the
// stdio of the machine's processes) and the virtiofs shares bb mounts.
//
// A host-only network (container network create --internal) is not used,
// because it does not hold: in every release so far its machines reach the
// internet over TCP by address, NATed by the Mac (apple/container #2062,
// open at 1.2.2, with the fix of #2072 unmerged), and every service of the
// Mac on the network's gateway address (#1320); macOS's pf does not filter
// that traffic, and rules in the guest are a root process away from
// undone. A machine with no network device has neither way out, on every
// release and macOS the CLI runs on, and needs no network of bb's, hence
// no macOS 26 networking, and nothing to remove.
//
// The sidecar runs on the default network (its way out), as the person's
// uid (the owner of the egress folder it writes), with no capability. The
// token values reach its environment and nowhere else: bb-launch puts
// them in the CLI's own environment and names them with --env NAME, which
// the CLI reads from there; they are on no command line and in no file,
// and the agent's inspect output has none of them.
//
// # The agent
//
// The CLI copies files only into a running container and attaches only to
// a container it starts, so the agent's container runs bb's init (the
// static bb-egress already on the Mac for the sidecar's image, mounted
// read-only with its spec at /bb/guest, under the runtime's --init): as
// root with CHOWN, DAC_OVERRIDE, FOWNER, SETUID, SETGID and SETPCAP only,
// it writes the bottle's CA (at the plan's ca_file, and into the system's
// bundle), bb.egress into /etc/hosts and the agent's home, then empties its
// bounding set, sets no-new-privileges and becomes the agent's user for
// good; as the agent it writes the agent's own files and runs its command
// on a terminal it holds, which bb-launch attach joins through container
// exec. `container exec` as root (by hand, not through bb) gets those six
// capabilities: bb-launch exec runs its commands as the agent, with no new
// privileges.
//
// # Snapshots
//
// A snapshot is `container export` of the agent's container, rebuilt FROM
// scratch with `container build`. Since 1.2.1 (apple/container #1630) a
// running container exports; before, the agent is stopped for it (bb-freeze
// asks first) and started again.
package macoscontainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
)

// MinVersion is the oldest container release bb drives: the first whose
// `container list` and `image list` JSON bb reads, and which has every
// option bb passes.
var MinVersion = Version{1, 0, 0}

// LiveExportVersion is the first release that exports a running container.
var LiveExportVersion = Version{1, 2, 1}

// InstallHint is where a person gets the CLI.
const InstallHint = "install Apple's container 1.0.0 or later (https://github.com/apple/container/releases) on a Mac with Apple silicon, then run 'container system start'"

// Driver registers the backend. Opening it finds the CLI; it asks the CLI
// nothing until a bottle of its is touched.
var Driver = backend.Driver{Name: names.MacOSContainer, Open: func(_ context.Context, c backend.Config) (backend.Backend, error) {
	path, err := exec.LookPath("container")
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("opening backend %s: %w", names.MacOSContainer, ErrNoTool), InstallHint)
	}
	return New(&Tool{Path: path}, c.Store), nil
}}

// Backend is the macos-container backend. It has every optional
// capability: Attacher, Reloader, Restarter, Freezable, ImageChecker,
// Remover, GitExporter.
type Backend struct {
	tool  *Tool
	store *state.Store
	// Labels go on every container, volume and image the backend makes
	// (tests: bb.test=1).
	Labels map[string]string

	mu       sync.Mutex
	versions *Versions
}

var (
	_ backend.Backend      = (*Backend)(nil)
	_ backend.Attacher     = (*Backend)(nil)
	_ backend.Reloader     = (*Backend)(nil)
	_ backend.Restarter    = (*Backend)(nil)
	_ backend.Freezable    = (*Backend)(nil)
	_ backend.ImageChecker = (*Backend)(nil)
	_ backend.Remover      = (*Backend)(nil)
	_ backend.GitExporter  = (*Backend)(nil)
)

// New returns the backend driving tool, with bb's state in store.
func New(tool *Tool, store *state.Store) *Backend { return &Backend{tool: tool, store: store} }

// Name is "macos-container".
func (b *Backend) Name() string { return names.MacOSContainer }

// Close does nothing: the CLI keeps no connection.
func (b *Backend) Close() error { return nil }

// Prepare checks the plan's macos_container section and returns the
// backend's steps of the launch l.
func (b *Backend) Prepare(l *backend.Launching) (backend.LaunchSteps, error) {
	if err := checkPlan(l.Plan); err != nil {
		return nil, err
	}
	return &launch{Launching: l, b: b, m: l.Plan.MacOSContainer}, nil
}

// checkPlan checks the plan's section: backend.CheckPlan has checked the
// rest. The agent's network is no choice: none.
func checkPlan(p *plan.Plan) error {
	m := p.MacOSContainer
	if m == nil {
		return exit.Usagef("plan has no macos_container section")
	}
	for field, v := range map[string]string{"agent_container": m.AgentContainer, "sidecar_container": m.SidecarContainer,
		"sidecar_network": m.SidecarNetwork} {
		if v == "" {
			return exit.Usagef("plan macos_container.%s is empty", field)
		}
	}
	if m.AgentNetwork != "none" {
		return exit.Usage(fmt.Errorf("plan macos_container.agent_network is %q: the agent's machine has no network, "+
			"its only way out is the sidecar's socket", m.AgentNetwork), "plan it again with bb-plan, which says none")
	}
	if w := p.Agent.Workdir; !path.IsAbs(w) || path.Clean(w) != w || w == "/" || w == "/bb" || strings.HasPrefix(w, "/bb/") {
		// The workspace is mounted there, over what the image has; bb's
		// own mounts are under /bb.
		return exit.Usagef("plan agent.workdir %q: want a clean absolute folder of its own, not / nor under /bb", w)
	}
	if m.Labels[names.LabelSlug] != p.Slug {
		return exit.Usagef("plan macos_container.labels: %s is not the slug %s", names.LabelSlug, p.Slug)
	}
	if m.AgentContainer != names.Agent(p.Slug) || m.SidecarContainer != names.Sidecar(p.Slug) {
		// Stop, exec and the freezer find a bottle's containers by these
		// names.
		return exit.Usagef("plan macos_container: the containers must be named %s and %s", names.Agent(p.Slug), names.Sidecar(p.Slug))
	}
	return nil
}

// check asks the CLI its version, once: a release older than MinVersion,
// or one whose services do not run, cannot run a bottle (exit 3).
func (b *Backend) check(ctx context.Context) (Versions, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.versions != nil {
		return *b.versions, nil
	}
	out, err := b.tool.Output(ctx, "system", "version", "--format", "json")
	if err != nil {
		if errors.Is(err, ErrNoTool) {
			return Versions{}, exit.Backend(err, InstallHint)
		}
		return Versions{}, exit.Backend(fmt.Errorf("asking container its version: %w", err))
	}
	vs, err := DecodeVersions(out)
	if err != nil {
		return Versions{}, exit.Backend(err)
	}
	if vs.CLI.Less(MinVersion) {
		return Versions{}, exit.Backend(fmt.Errorf("container %s cannot run a bottle: bb needs container %s or later, "+
			"the first release whose list JSON bb reads and that has every option bb passes "+
			"(the agent's machine gets no network device, --network none, and the sidecar's socket, --publish-socket)",
			vs.CLI, MinVersion), "upgrade it: https://github.com/apple/container/releases")
	}
	if vs.Server == nil {
		return Versions{}, exit.Backend(errors.New("container's services are not running"), "run 'container system start'")
	}
	b.versions = &vs
	return vs, nil
}

// containers lists the containers of bottle slug (every one, with --all),
// found by their bb.slug label.
func (b *Backend) containers(ctx context.Context, slug string) ([]Container, error) {
	out, err := b.tool.Output(ctx, "list", "--all", "--format", "json")
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("listing containers: %w", err))
	}
	all, err := DecodeContainers(out)
	if err != nil {
		return nil, exit.Backend(err)
	}
	var mine []Container
	for _, c := range all {
		if c.Labels[names.LabelSlug] == slug {
			mine = append(mine, c)
		}
	}
	return mine, nil
}

// role returns the bottle's container of role, if any.
func role(cs []Container, r string) *Container {
	for i := range cs {
		if cs[i].Labels[names.LabelRole] == r {
			return &cs[i]
		}
	}
	return nil
}

// Status is what the CLI has of the bottle: its containers' states.
// Volumes are the bottle's to keep across stops, and are not leftovers.
func (b *Backend) Status(ctx context.Context, slug string) (backend.Status, error) {
	cs, err := b.containers(ctx, slug)
	if err != nil {
		return backend.Status{}, err
	}
	// The CLI's list has no exit status (ContainerStatus: state, networks,
	// startedDate).
	s := backend.Status{Agent: backend.StatusMissing, Leftovers: len(cs) > 0, ExitCode: -1}
	if a := role(cs, names.RoleAgent); a != nil {
		s.AgentName, s.Agent = a.ID, backend.StatusStopped
		if a.Running() || a.State == "stopping" {
			s.Agent = backend.StatusRunning
		}
	}
	if e := role(cs, names.RoleEgress); e != nil {
		s.SidecarRunning = e.Running()
	}
	return s, nil
}

// Stop removes the bottle's containers, agent first, found by their
// labels; a bottle with none is already stopped. Its volumes stay (Remove
// removes them).
func (b *Backend) Stop(ctx context.Context, slug string) error {
	cs, err := b.containers(ctx, slug)
	if err != nil {
		return err
	}
	slices.SortFunc(cs, func(x, y Container) int { return roleOrder(x) - roleOrder(y) })
	// A stop first, the agent's before the sidecar's, so that the
	// sidecar drains and ends its audit log as on a SIGTERM: it is given
	// its --drain (10s) and a little more. The delete then removes them
	// whatever state they are in.
	for _, c := range cs {
		if c.Running() {
			wait := "5"
			if roleOrder(c) > 0 {
				wait = "12"
			}
			b.tool.Output(ctx, "stop", "--time", wait, c.ID) //nolint:errcheck // the delete --force follows
		}
	}
	var errs []error
	for _, c := range cs {
		if err := b.removeContainer(ctx, c.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return exit.Backend(err)
	}
	return nil
}

func roleOrder(c Container) int {
	if c.Labels[names.LabelRole] == names.RoleAgent {
		return 0
	}
	return 1
}

// removeContainer deletes a container, running or not; one already gone
// is no error.
func (b *Backend) removeContainer(ctx context.Context, id string) error {
	if _, err := b.tool.Output(ctx, "delete", "--force", id); err != nil && !notFound(err) {
		return fmt.Errorf("removing container %s: %w", id, err)
	}
	return nil
}

func notFound(err error) bool {
	var te *ToolError
	return errors.As(err, &te) && (containsFold(te.Said, "not found") || containsFold(te.Said, "notFound"))
}

// volumes lists the CLI's volumes.
func (b *Backend) volumes(ctx context.Context) ([]Volume, error) {
	out, err := b.tool.Output(ctx, "volume", "list", "--format", "json")
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("listing volumes: %w", err))
	}
	vs, err := DecodeVolumes(out)
	if err != nil {
		return nil, exit.Backend(err)
	}
	return vs, nil
}

// Remove removes what the CLI keeps of bottle slug beyond its containers,
// for stop --rm: its own git repository (and any volume labelled as its)
// and its snapshot images.
func (b *Backend) Remove(ctx context.Context, slug string) error {
	vs, err := b.volumes(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range vs {
		if v.Name != names.GitVolume(slug) && v.Labels[names.LabelSlug] != slug {
			continue
		}
		if _, err := b.tool.Output(ctx, "volume", "delete", v.Name); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("removing bottle %s's volume %s: %w", slug, v.Name, err))
		}
	}
	out, err := b.tool.Output(ctx, "image", "list", "--format", "json")
	if err != nil {
		errs = append(errs, fmt.Errorf("listing bottle %s's snapshots: %w", slug, err))
	} else if ims, err := DecodeImages(out); err != nil {
		errs = append(errs, err)
	} else {
		for _, im := range ims {
			if im.Labels[names.LabelSlug] != slug || im.Labels[names.LabelRole] != names.RoleSnapshot {
				continue
			}
			if _, err := b.tool.Output(ctx, "image", "delete", im.Name); err != nil && !notFound(err) {
				errs = append(errs, fmt.Errorf("removing bottle %s's snapshot %s: %w", slug, im.Name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return exit.Backend(err)
	}
	return nil
}

// agentPlan reads the stored plan of bottle slug: the agent's user and
// working folder, for exec and attach.
func (b *Backend) agentPlan(slug string) (*plan.Plan, error) {
	raw, err := b.store.ReadPlan(slug)
	if err != nil {
		return nil, exit.Usage(fmt.Errorf("reading bottle %s's plan: %w", slug, err))
	}
	var p plan.Plan
	if err := jsonUnmarshal(raw, &p); err != nil {
		return nil, exit.Usage(fmt.Errorf("reading bottle %s's plan: %w", slug, err))
	}
	return &p, nil
}

// runningAgent is the bottle's running agent container, or a
// *backend.NotRunningError.
func (b *Backend) runningAgent(ctx context.Context, slug string) (string, error) {
	cs, err := b.containers(ctx, slug)
	if err != nil {
		return "", err
	}
	a := role(cs, names.RoleAgent)
	if a == nil || !a.Running() {
		return "", exit.Usage(&backend.NotRunningError{Slug: slug}, "start it with 'bb-launch resume "+slug+"'")
	}
	return a.ID, nil
}

// Exec runs cmd in the bottle's running agent, as the agent's user, in its
// working folder and environment, with no new privileges and no input, and
// returns its exit status.
func (b *Backend) Exec(ctx context.Context, slug string, cmd []string, stdout, stderr io.Writer) (int, error) {
	p, err := b.agentPlan(slug)
	if err != nil {
		return 0, err
	}
	agent, err := b.runningAgent(ctx, slug)
	if err != nil {
		return 0, err
	}
	_, err = b.tool.Run(ctx, Call{Args: execArgs(agent, p.Agent.User, p.Agent.Workdir, cmd), Stdout: stdout, Stderr: stderr})
	var te *ToolError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &te) && te.Code >= 0:
		return te.Code, nil
	case ctx.Err() != nil:
		return 0, ctx.Err()
	}
	return 0, exit.Backend(fmt.Errorf("running a command in bottle %s: %w", slug, err))
}

// Attach opens a session on the terminal of the bottle's running agent.
func (b *Backend) Attach(ctx context.Context, slug string) (backend.Session, error) {
	p, err := b.agentPlan(slug)
	if err != nil {
		return nil, err
	}
	agent, err := b.runningAgent(ctx, slug)
	if err != nil {
		return nil, err
	}
	return b.session(agent, slug, p.Agent.User), nil
}

func (b *Backend) session(agent, slug, user string) *Session {
	return &Session{tool: b.tool, agent: agent, argv: attachArgs(agent, user),
		stopped: func(ctx context.Context) (bool, error) { return b.agentStopped(ctx, slug) }}
}

// agentStopped says whether the bottle's agent stopped within a few
// seconds (the init ends a moment after the agent's status went out).
func (b *Backend) agentStopped(ctx context.Context, slug string) (bool, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		cs, err := b.containers(ctx, slug)
		if err != nil {
			return false, err
		}
		if a := role(cs, names.RoleAgent); a == nil || !a.Running() {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Reload sends the bottle's sidecar SIGHUP: it re-reads its routes now.
func (b *Backend) Reload(ctx context.Context, slug string) error {
	cs, err := b.containers(ctx, slug)
	if err != nil {
		return err
	}
	e := role(cs, names.RoleEgress)
	if e == nil || !e.Running() {
		return &backend.NotRunningError{Slug: slug, Role: names.RoleEgress}
	}
	if _, err := b.tool.Output(ctx, "kill", "--signal", "HUP", e.ID); err != nil {
		return exit.Backend(fmt.Errorf("signalling the sidecar of bottle %s: %w", slug, err))
	}
	return nil
}

// ImageExists reports whether the CLI lists the image ref.
func (b *Backend) ImageExists(ctx context.Context, ref string) (bool, error) {
	im, err := b.images().find(ctx, ref)
	if err != nil {
		return false, exit.Backend(err)
	}
	return im != nil, nil
}

func (b *Backend) images() *images { return &images{tool: b.tool, testLabels: b.Labels} }

// Freezer snapshots the backend's bottles (export, then build).
func (b *Backend) Freezer() freeze.Freezer { return &Freezer{b: b} }
