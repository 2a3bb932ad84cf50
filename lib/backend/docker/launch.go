package docker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"gopkg.in/yaml.v3"

	"github.com/bb-bottles/bb/lib/egress"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/state"
)

// Engine is the part of the engine client a bottle needs; *client.Client
// has it.
type Engine interface {
	Images
	NetworkCreate(ctx context.Context, name string, opts client.NetworkCreateOptions) (client.NetworkCreateResult, error)
	NetworkConnect(ctx context.Context, network string, opts client.NetworkConnectOptions) (client.NetworkConnectResult, error)
	NetworkInspect(ctx context.Context, network string, opts client.NetworkInspectOptions) (client.NetworkInspectResult, error)
	NetworkList(ctx context.Context, opts client.NetworkListOptions) (client.NetworkListResult, error)
	NetworkRemove(ctx context.Context, network string, opts client.NetworkRemoveOptions) (client.NetworkRemoveResult, error)
	ContainerCreate(ctx context.Context, opts client.ContainerCreateOptions) (client.ContainerCreateResult, error)
	ContainerStart(ctx context.Context, id string, opts client.ContainerStartOptions) (client.ContainerStartResult, error)
	ContainerInspect(ctx context.Context, id string, opts client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerList(ctx context.Context, opts client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerRemove(ctx context.Context, id string, opts client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
	ContainerLogs(ctx context.Context, id string, opts client.ContainerLogsOptions) (client.ContainerLogsResult, error)
	ContainerKill(ctx context.Context, id string, opts client.ContainerKillOptions) (client.ContainerKillResult, error)
	ContainerWait(ctx context.Context, id string, opts client.ContainerWaitOptions) client.ContainerWaitResult
	ContainerAttach(ctx context.Context, id string, opts client.ContainerAttachOptions) (client.ContainerAttachResult, error)
	ContainerResize(ctx context.Context, id string, opts client.ContainerResizeOptions) (client.ContainerResizeResult, error)
	CopyToContainer(ctx context.Context, id string, opts client.CopyToContainerOptions) (client.CopyToContainerResult, error)
	CopyFromContainer(ctx context.Context, id string, opts client.CopyFromContainerOptions) (client.CopyFromContainerResult, error)
	ExecCreate(ctx context.Context, id string, opts client.ExecCreateOptions) (client.ExecCreateResult, error)
	ExecAttach(ctx context.Context, execID string, opts client.ExecAttachOptions) (client.ExecAttachResult, error)
	ExecInspect(ctx context.Context, execID string, opts client.ExecInspectOptions) (client.ExecInspectResult, error)
}

var _ Engine = (*client.Client)(nil)

// LaunchOptions are what a launch needs besides the engine.
type LaunchOptions struct {
	// Plan is the plan to carry out, and PlanJSON its text, stored as is in
	// the bottle's folder.
	Plan     *plan.Plan
	PlanJSON []byte
	Store    *state.Store
	// Resume boots an existing bottle again (same slug, canary, CA and
	// routes) instead of creating one; Image, when set, is the committed
	// image to boot instead of building the Dockerfile.
	Resume bool
	Image  string
	// SidecarBinary is the static bb-egress put into the sidecar image.
	SidecarBinary string
	// BaseImage is the agent Dockerfile's BASE build argument; empty keeps
	// the Dockerfile's own default. BuildArgs are more build arguments
	// (INSTALL_CLI=0 in tests) over the plan's.
	BaseImage string
	BuildArgs map[string]string
	// UpstreamCA is a PEM file of CAs the sidecar trusts upstream besides
	// the system's (tests and the demo); it is copied into the egress folder.
	UpstreamCA string
	// AllowPrivate lets the sidecar's routes reach private (RFC 1918)
	// addresses, which it refuses by default: for upstreams on private
	// networks, e.g. the offline demo's and the tests' on the bottle's
	// egress network. Recorded in the LaunchFile, so a resume keeps it.
	AllowPrivate bool
	// Env looks up the host's variables: token values, HOME for ~ in token
	// files. Dir is the folder a plan without a workspace mounts.
	Env func(string) string
	Dir string
	// UID and GID run the sidecar, so that it can write the bind-mounted
	// egress folder the invoking user owns.
	UID, GID int
	// Progress receives build progress and what the launch is doing (nil:
	// nowhere).
	Progress io.Writer
	// Attach opens the agent's terminal session (OpenAttach) just before
	// it starts, so that nothing it prints first is lost; Record.Session
	// holds it. A launch that fails after opening it closes it.
	Attach bool
	// BeforeStart is called with the agent container created and
	// provisioned, just before it starts (bb-launch attaches the terminal
	// here, so that nothing the agent prints first is lost). An error fails
	// the launch.
	BeforeStart func(ctx context.Context, agentID string) error
	// ReadyTimeout bounds the wait for the sidecar; 0 means 20s.
	ReadyTimeout time.Duration
	// Trace, when set, gets how long each step took.
	Trace io.Writer
}

// Record is what a launch made: bb-launch prints it (the launch record), and
// the next command needs nothing else to reach the bottle.
type Record struct {
	Slug             string `json:"slug"`
	Backend          string `json:"backend"`
	AgentContainer   string `json:"agent_container"`
	SidecarContainer string `json:"sidecar_container"`
	AgentImage       string `json:"agent_image"`
	SidecarImage     string `json:"sidecar_image"`
	// AgentID is the agent container's ID (not printed: names are stable).
	AgentID string `json:"-"`
	// Session is the agent's terminal, when LaunchOptions.Attach.
	Session *Session `json:"-"`
}

// StepError is a launch that failed at a step; Step names it ("starting
// the sidecar"), and the message is "<step>: <cause>".
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Launch makes a plan real: state, images, networks, the sidecar and the
// provisioned agent, started. A failure at any step, or ctx being done,
// removes everything this launch created (containers, networks, and the
// state folder when it created it) and names the step.
func Launch(ctx context.Context, api Engine, o LaunchOptions) (rec *Record, err error) {
	p := o.Plan
	if err := checkPlan(p); err != nil {
		return nil, err
	}
	if o.Env == nil {
		o.Env = func(string) string { return "" }
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	l := &launch{api: api, o: o, p: p, d: p.Docker, id: strings.ToLower(rand.Text()[:16])}
	defer func() {
		if err != nil {
			l.interrupted = ctx.Err() != nil
			l.undo()
		}
	}()
	step := func(ctx context.Context, name string, fn func(context.Context) error) error {
		if err := ctx.Err(); err != nil {
			return &StepError{Step: name, Err: err}
		}
		start := time.Now()
		err := fn(ctx)
		if o.Trace != nil {
			fmt.Fprintf(o.Trace, "bb-launch: %-28s %v\n", name, time.Since(start).Round(time.Millisecond))
		}
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w: %w", ctx.Err(), err)
			}
			return &StepError{Step: name, Err: err}
		}
		return nil
	}
	type stepFunc struct {
		name string
		fn   func(context.Context) error
	}
	// Each lane runs its steps in order, and the lanes of a stage run at
	// once. A failing lane does not cancel the others: a creation cut off
	// half way may still complete in the engine after undo has looked, so
	// they run to their end (they are short), and undo sees what they made.
	stage := func(lanes ...[]stepFunc) error {
		errs := make([]error, len(lanes))
		var wg sync.WaitGroup
		for i, lane := range lanes {
			wg.Go(func() {
				for _, s := range lane {
					if errs[i] = step(ctx, s.name, s.fn); errs[i] != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		return cmp.Or(errs...)
	}
	stages := [][][]stepFunc{
		{{{"checking the workspace", l.checkWorkspace}, {"reading the tokens", l.readTokens}}},
		{{{"writing the bottle's state", l.writeState}}},
		// One after the other, so that their progress does not interleave.
		{{{"building the sidecar image", l.sidecarImage}, {"building the agent image", l.agentImage}}},
		{{{"creating the networks", l.networks}}},
		// The sidecar starts while the agent is made ready; the agent
		// starts once the sidecar answers.
		{{{"starting the sidecar", l.startSidecar}}, {{"creating the agent", l.createAgent}, {"provisioning the agent", l.provision}}},
		{{{"starting the agent", l.startAgent}}},
	}
	for _, lanes := range stages {
		if err := stage(lanes...); err != nil {
			return nil, err
		}
	}
	rec = &Record{Slug: p.Slug, Backend: names.Docker, AgentContainer: l.d.AgentContainer,
		SidecarContainer: l.d.SidecarContainer, AgentImage: l.agentRef, SidecarImage: l.sidecarRef,
		AgentID: l.agentID, Session: l.session}
	if err := step(ctx, "recording the launch", func(context.Context) error { return l.record(rec) }); err != nil {
		return nil, err
	}
	if l.unlock != nil {
		l.unlock()
	}
	return rec, nil
}

// LaunchFile in a bottle's folder records how it was last launched, so that
// resume can boot the same image (and build it the same way) without the
// flags and variables of the first launch.
const LaunchFile = "launch.json"

// Launched is the LaunchFile.
type Launched struct {
	AgentImage   string            `json:"agent_image"`
	SidecarImage string            `json:"sidecar_image"`
	BaseImage    string            `json:"base_image"`
	BuildArgs    map[string]string `json:"build_args"`
	// AllowPrivate is LaunchOptions.AllowPrivate.
	AllowPrivate bool `json:"allow_private,omitempty"`
	// Workspace is the host folder mounted in the agent (symlinks
	// resolved), recorded at the first launch: a resume mounts it, not the
	// folder the resume happens to run in.
	Workspace string `json:"workspace,omitempty"`
}

func (l *launch) record(rec *Record) error {
	prev, _ := ReadLaunched(l.o.Store, l.p.Slug)
	ld := Launched{AgentImage: rec.AgentImage, SidecarImage: rec.SidecarImage, BaseImage: l.o.BaseImage, BuildArgs: l.o.BuildArgs,
		AllowPrivate: l.o.AllowPrivate, Workspace: l.workspace}
	if l.o.Image != "" && prev.AgentImage != "" {
		// Booted from a committed image: the built one is still the one
		// to rebuild from.
		ld.AgentImage = prev.AgentImage
	}
	if ld.BuildArgs == nil {
		ld.BuildArgs = map[string]string{}
	}
	b, err := json.MarshalIndent(ld, "", "  ")
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(filepath.Join(l.o.Store.BottleDir(l.p.Slug), LaunchFile), append(b, '\n'), 0o600)
}

// ReadLaunched reads a bottle's LaunchFile; a missing one is empty.
func ReadLaunched(st *state.Store, slug string) (Launched, error) {
	var ld Launched
	b, err := os.ReadFile(filepath.Join(st.BottleDir(slug), LaunchFile))
	if errors.Is(err, fs.ErrNotExist) {
		return ld, nil
	}
	if err != nil {
		return ld, err
	}
	if err := json.Unmarshal(b, &ld); err != nil {
		return ld, fmt.Errorf("reading %s: %w", filepath.Join(st.BottleDir(slug), LaunchFile), err)
	}
	return ld, nil
}

// checkPlan checks what Launch relies on, beyond the strict decoding.
func checkPlan(p *plan.Plan) error {
	switch {
	case p == nil:
		return exit.Usagef("no plan")
	case p.Kind != plan.Kind:
		return exit.Usagef("plan kind is %q, want %q", p.Kind, plan.Kind)
	case p.Version != plan.Version:
		return exit.Usagef("plan version is %d, want %d", p.Version, plan.Version)
	case p.Backend != names.Docker:
		return exit.Usagef("plan backend is %q, want %q", p.Backend, names.Docker)
	case p.Docker == nil:
		return exit.Usagef("plan has no docker section")
	case !plan.ValidCanary(p.Canary):
		return exit.Usagef("plan canary is not 43 base64url characters")
	case p.Agent.User == "" || p.Agent.User == "root" || p.Agent.User == "0" || strings.HasPrefix(p.Agent.User, "0:"):
		return exit.Usagef("plan agent.user is %q: the agent must run as a non-root user", p.Agent.User)
	case len(p.Agent.Command) == 0:
		return exit.Usagef("plan agent.command is empty")
	}
	if err := state.CheckSlug(p.Slug); err != nil {
		return exit.Usage(fmt.Errorf("plan slug: %w", err))
	}
	d := p.Docker
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

// labels are a resource's labels: the plan's, this launch's and, in tests,
// bb.test.
func (l *launch) labels(m map[string]string) map[string]string {
	out := withTestLabels(m)
	out[names.LabelLaunch] = l.id
	return out
}

// launch is one launch in progress: what it made so far, to undo.
type launch struct {
	api Engine
	o   LaunchOptions
	p   *plan.Plan
	d   *plan.Docker

	// id is on every container and network the launch creates (label
	// bb.launch), so that undo finds one whose creation was interrupted
	// before the engine could say its ID.
	id          string
	interrupted bool
	unlock      func() error
	madeState   bool // this launch writes the bottle's metadata: undo removes its folder
	workspace   string
	tokens      []string
	sidecarRef  string
	agentRef    string
	networkIDs  []string
	sidecarID   string
	sidecarIP   string
	agentID     string
	session     *Session
}

// mark traces a point within a step.
func (l *launch) mark(what string) {
	if l.o.Trace != nil {
		fmt.Fprintf(l.o.Trace, "bb-launch:   %s at %s\n", what, time.Now().Format("15:04:05.000"))
	}
}

// undo removes what the launch made, with a context of its own: the
// launch's may be the one that was cancelled.
func (l *launch) undo() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(context.Background()), 30*time.Second)
	defer cancel()
	if l.session != nil {
		l.session.Close()
	}
	// Only what this launch made, by ID: a clash with another bottle's
	// containers or networks must not remove them.
	for _, id := range []string{l.agentID, l.sidecarID} {
		if id != "" {
			removeContainer(ctx, l.api, id) //nolint:errcheck // best effort
		}
	}
	l.sweep(ctx)
	if l.interrupted {
		// A creation the interruption cut off may complete in the engine
		// a moment later.
		time.Sleep(500 * time.Millisecond)
		l.sweep(ctx)
	}
	if l.madeState {
		os.RemoveAll(l.o.Store.BottleDir(l.p.Slug))
	}
	if l.unlock != nil {
		l.unlock()
	}
}

// sweep removes the containers, then the networks, labelled with this
// launch's id.
func (l *launch) sweep(ctx context.Context) {
	f := client.Filters{}.Add("label", names.LabelLaunch+"="+l.id)
	if res, err := l.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f}); err == nil {
		for _, c := range res.Items {
			removeContainer(ctx, l.api, c.ID) //nolint:errcheck // best effort
		}
	}
	for _, id := range l.networkIDs {
		removeNetwork(ctx, l.api, id) //nolint:errcheck
	}
	if res, err := l.api.NetworkList(ctx, client.NetworkListOptions{Filters: f}); err == nil {
		for _, n := range res.Items {
			removeNetwork(ctx, l.api, n.ID) //nolint:errcheck
		}
	}
}

// readTokens reads every token the plan names from the host, before
// anything is created: a bottle never starts with a credential silently
// missing.
func (l *launch) readTokens(context.Context) error {
	env := []string{plan.TokenEnvPrefix + plan.CanaryToken + "=" + l.p.Canary}
	for _, t := range l.p.Egress.Tokens {
		v, err := tokenValue(t, l.o.Env)
		if err != nil {
			return err
		}
		env = append(env, plan.TokenEnvPrefix+t.Name+"="+v)
	}
	l.tokens = env
	return nil
}

func tokenValue(t plan.Token, env func(string) string) (string, error) {
	switch {
	case t.Env != "":
		v := env(t.Env)
		if v == "" {
			return "", exit.Usage(fmt.Errorf("token %s: the host variable %s is not set", t.Name, t.Env),
				fmt.Sprintf("export %s before launching, or give the bottle's tokens.%s a file: PATH", t.Env, t.Name))
		}
		return v, nil
	case t.File != "":
		path := t.File
		if rest, ok := strings.CutPrefix(path, "~/"); ok {
			home := env("HOME")
			if home == "" {
				return "", exit.Usagef("token %s: cannot expand ~ in %s: HOME is not set", t.Name, t.File)
			}
			path = filepath.Join(home, rest)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", exit.Usage(fmt.Errorf("token %s: reading %s: %w", t.Name, path, unwrapPathErr(err)),
				fmt.Sprintf("put the token in %s, or give the bottle's tokens.%s an env: VARIABLE", path, t.Name))
		}
		v := strings.TrimSpace(string(b))
		if v == "" || strings.ContainsAny(v, "\r\n\x00") {
			return "", exit.Usagef("token %s: %s must hold one line, the token", t.Name, path)
		}
		return v, nil
	}
	return "", exit.Usagef("token %s: the plan says neither env nor file", t.Name)
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ResolvConfFile is the agent's /etc/resolv.conf, kept in the bottle's
// folder.
const ResolvConfFile = "resolv.conf"

// resolvConf points the agent's resolver at loopback, where nothing
// listens: the agent resolves nothing by itself (bb.egress is in its
// /etc/hosts, and the sidecar resolves everything else). Docker's embedded
// DNS server would otherwise forward any name to the host's resolvers — a
// way out through DNS queries that no proxy sees.
const resolvConf = "# bb: the agent resolves no names; its proxy does.\nnameserver 127.0.0.1\noptions ndots:0 timeout:1 attempts:1\n"

// writeState takes the bottle's lock and writes its folder: a new bottle's
// plan, metadata, routes and CA; for a resumed one, only what is missing.
func (l *launch) writeState(ctx context.Context) error {
	st, slug := l.o.Store, l.p.Slug
	unlock, err := st.Lock(ctx, slug)
	if err != nil {
		return err
	}
	l.unlock = unlock
	// Whether the bottle exists is decided under the lock: a launch that
	// lost a race for the slug must not take the winner's folder for one
	// it made, and remove it as it fails.
	exists := st.Exists(slug)
	switch {
	case l.o.Resume && !exists:
		return exit.Usage(&state.NotFoundError{Slug: slug, Dir: st.Dir}, "run 'bb-launch ls' to list the bottles")
	case !l.o.Resume && exists:
		return exit.Usage(fmt.Errorf("bottle %s already exists", slug),
			fmt.Sprintf("resume it with 'bb-launch resume %s', or remove it with 'bb-launch stop --rm %s'", slug, slug))
	}
	if !l.o.Resume {
		// From here the folder is this launch's: no bottle had metadata.
		l.madeState = true
		if err := st.WritePlan(slug, l.o.PlanJSON); err != nil {
			return err
		}
		md := state.Metadata{Slug: slug, Agent: l.p.Agent.Name, Template: l.p.Agent.Template, Label: l.p.Label,
			Color: l.p.Color, Backend: names.Docker, Created: time.Now().UTC().Truncate(time.Second), Images: []state.Image{}}
		if err := st.WriteMetadata(slug, md); err != nil {
			return err
		}
	}
	dir, err := st.MakeEgressDir(slug)
	if err != nil {
		return err
	}
	// A resumed bottle keeps its routes: bb-egress apply may have changed
	// them since the plan was made.
	routesPath := filepath.Join(dir, state.RoutesFile)
	if _, err := os.Stat(routesPath); !l.o.Resume || errors.Is(err, fs.ErrNotExist) {
		if err := writeRoutes(routesPath, l.p.Egress.Routes); err != nil {
			return err
		}
	}
	// The CA is made here, by the sidecar's own code, so that the agent can
	// be given its certificate before the sidecar runs; its key stays in
	// the egress folder, which only the sidecar mounts.
	if _, err := egress.LoadOrCreateCA(dir, 1); err != nil {
		return err
	}
	if l.o.UpstreamCA != "" {
		b, err := os.ReadFile(l.o.UpstreamCA)
		if err != nil {
			return exit.Usage(fmt.Errorf("reading --upstream-ca: %w", err))
		}
		if err := state.WriteFileAtomic(filepath.Join(dir, UpstreamCAFile), b, 0o644); err != nil {
			return err
		}
	}
	if err := state.WriteFileAtomic(filepath.Join(st.BottleDir(slug), ResolvConfFile), []byte(resolvConf), 0o644); err != nil {
		return err
	}
	// The agent's container is created before the sidecar has an address:
	// the file must exist to be mounted, and gets bb.egress at the start.
	return l.writeHosts("")
}

// HostsFile is the agent's /etc/hosts, kept in the bottle's folder: its
// only way to a name (see resolvConf) is bb.egress, the sidecar.
const HostsFile = "hosts"

func (l *launch) writeHosts(sidecarIP string) error {
	text := "127.0.0.1\tlocalhost\n127.0.1.1\t" + l.p.Slug + "\n"
	if sidecarIP != "" {
		text += sidecarIP + "\t" + l.p.Egress.Host + "\n"
	}
	return state.WriteFileAtomic(filepath.Join(l.o.Store.BottleDir(l.p.Slug), HostsFile), []byte(text), 0o644)
}

// UpstreamCAFile is where --upstream-ca is copied in the egress folder.
const UpstreamCAFile = "upstream-ca.pem"

// writeRoutes writes the sidecar's routes file, checked by the sidecar's
// own parser first.
func writeRoutes(path string, rs []routes.Route) error {
	if rs == nil {
		rs = []routes.Route{}
	}
	data, err := yaml.Marshal(rs)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := routes.Parse(data, path); err != nil {
		return exit.Usage(fmt.Errorf("the plan's routes: %w", err))
	}
	return state.WriteFileAtomic(path, data, 0o600)
}

func (l *launch) sidecarImage(ctx context.Context) error {
	ref, err := EnsureSidecarImage(ctx, l.api, l.o.SidecarBinary, l.o.Progress)
	l.sidecarRef = ref
	return err
}

func (l *launch) agentImage(ctx context.Context) error {
	if l.o.Image != "" {
		l.agentRef = l.o.Image
		return nil
	}
	spec, err := AgentSpec(l.p, l.o.BaseImage, l.o.BuildArgs)
	if err != nil {
		return err
	}
	ref, _, err := EnsureAgentImage(ctx, l.api, spec, l.o.Progress)
	l.agentRef = ref
	return err
}

// AddLabels adds labels to every image, container and network this package
// creates from then on. Tests of other packages mark theirs bb.test=1 with
// it, so that a sweep after them finds what they made.
func AddLabels(m map[string]string) { testLabels = withTestLabels(m) }
