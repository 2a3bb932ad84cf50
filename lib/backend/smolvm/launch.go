package smolvm

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
)

// Where things are in the agent's VM.
const (
	// GuestHelper is bb-egress in the agent's VM: it holds the agent's
	// terminal (bb-egress guest hold) and dials the sidecar.
	GuestHelper = "/bb/bin/bb-egress"
	// AgentSocket is the holder's socket. /run is memory-backed in a smolvm
	// machine (AGENTS.md "Memory-backed paths"), so a stop leaves none.
	AgentSocket = "/run/bb/agent.sock"
	// sidecarBinary is bb-egress in the sidecar's root filesystem.
	sidecarBinary = "/bb-egress"
)

// agentDNS is the upstream resolver of the agent's gateway: the host's
// loopback (see the package doc).
const agentDNS = "127.0.0.1"

// idleCommand is the agent machine's workload, run at every start: it keeps
// the machine up, and the image's own command (the agent's) from starting
// before provisioning; the agent runs under the holder. It is smolvm's own
// idle command (src/lib.rs DEFAULT_IDLE_CMD).
var idleCommand = []string{"sleep", "infinity"}

// checkPlan checks the plan's smolvm section.
func checkPlan(p *plan.Plan) error {
	s := p.Smolvm
	if s == nil {
		return exit.Usagef("plan has no smolvm section")
	}
	switch {
	case s.VM != names.Agent(p.Slug) || s.SidecarVM != names.Sidecar(p.Slug):
		return exit.Usagef("plan smolvm.vm and smolvm.sidecar_vm are %q and %q, want %q and %q",
			s.VM, s.SidecarVM, names.Agent(p.Slug), names.Sidecar(p.Slug))
	case s.Network != plan.SmolvmNetwork(p.Slug):
		return exit.Usagef("plan smolvm.network is %q, want %q", s.Network, plan.SmolvmNetwork(p.Slug))
	case s.SidecarAddress != plan.SmolvmSidecarAddress:
		// The one address the agent's egress policy allows: anything else
		// would be a hole, or no way out at all.
		return exit.Usagef("plan smolvm.sidecar_address is %q, want %q", s.SidecarAddress, plan.SmolvmSidecarAddress)
	}
	if err := checkName("smolvm.vm", s.VM); err != nil {
		return exit.WithHint(err, "a slug with '--' cannot name a smolvm machine: plan another with bb-plan --slug")
	}
	if err := checkName("smolvm.sidecar_vm", s.SidecarVM); err != nil {
		return err
	}
	if strings.Contains(p.Agent.Workdir, ":") || !path.IsAbs(p.Agent.Workdir) {
		return exit.Usagef("plan agent.workdir %q: want an absolute path without ':'", p.Agent.Workdir)
	}
	if strings.Contains(p.Egress.Dir, ":") || !path.IsAbs(p.Egress.Dir) {
		return exit.Usagef("plan egress.dir %q: want an absolute path without ':'", p.Egress.Dir)
	}
	return nil
}

// launch is the smolvm half of one launch in progress: what it made, to
// undo.
type launch struct {
	*backend.Launching
	b *Backend
	t *tool
	s *plan.Smolvm

	// archive is the agent image saved for smolvm, removed once smolvm has
	// staged it; pack the snapshot booted instead.
	archive, pack string
	agentRef      string
	rootfs        string
	// created are the machines this launch asked smolvm to create (the
	// sidecar's and the agent's lanes add to it at once).
	mu      sync.Mutex
	created []string
	session *session
	// gitNew: this launch made the bottle's git repository (undo removes
	// it).
	gitNew bool
}

// Stages are the smolvm steps of a launch, after the state is written.
func (l *launch) Stages() []backend.Stage {
	return []backend.Stage{
		{{{Name: "building the agent image", Run: l.agentImage}}, {{Name: "laying out the sidecar's root filesystem", Run: l.sidecarRootfs}}},
		// The sidecar starts first: it takes the network's first address,
		// the one the agent's egress policy names.
		{{{Name: "creating the sidecar", Run: l.createSidecar}, {Name: "starting the sidecar", Run: l.startSidecar}},
			{{Name: "making the bottle's git repository", Run: l.gitRepo}, {Name: "creating the agent", Run: l.createAgent}}},
		{{{Name: "starting the agent's VM", Run: l.startAgentVM}, {Name: "provisioning the agent", Run: l.provision},
			{Name: "waiting for the sidecar", Run: l.waitSidecar}, {Name: "starting the agent", Run: l.startAgent}}},
	}
}

// Result is what the launch made.
func (l *launch) Result() backend.Record {
	r := backend.Record{AgentContainer: l.s.VM, SidecarContainer: l.s.SidecarVM, AgentImage: l.agentRef,
		SidecarImage: l.rootfs, AgentID: l.s.VM}
	if l.session != nil {
		r.Session = l.session
	}
	return r
}

// Undo deletes the machines this launch created, and only those: a
// machine of the same name it did not make (another launch's) is left, as
// is one whose bb.launch label is not this launch's.
func (l *launch) Undo(ctx context.Context, interrupted bool) {
	if l.archive != "" {
		os.Remove(l.archive)
	}
	if l.gitNew {
		os.RemoveAll(l.gitDir())
	}
	l.mu.Lock()
	created := slices.Clone(l.created)
	l.mu.Unlock()
	if len(created) == 0 {
		return
	}
	if interrupted {
		// A create the interruption cut off may still finish a moment
		// later.
		time.Sleep(500 * time.Millisecond)
	}
	ms, err := l.t.machines(ctx)
	if err != nil {
		return
	}
	for _, n := range created {
		if m := find(ms, n); m != nil && m.Labels[names.LabelLaunch] == l.ID {
			l.t.run(ctx, nil, "machine", "delete", "--name", n, "--force") //nolint:errcheck // best effort
		}
	}
}

// labels are a machine's labels: the bottle's, its role, this launch's
// and, in tests, bb.test.
func (l *launch) labels(role string) map[string]string {
	m := map[string]string{names.LabelSlug: l.Plan.Slug, names.LabelRole: role,
		names.LabelAgent: l.Plan.Manifest.Agent.Name, names.LabelLaunch: l.ID}
	for k, v := range testLabels {
		m[k] = v
	}
	return m
}

// resources are --cpus and --mem for lim: whole vCPUs, rounded up (smolvm
// takes a u8), and MiB, rounded up; floor where lim has none.
func resources(lim, floor plan.Limits) []string {
	cpus := lim.CPUs
	if cpus <= 0 {
		cpus = floor.CPUs
	}
	mem := lim.MemoryBytes
	if mem <= 0 {
		mem, _ = plan.ParseMemory(floor.Memory)
	}
	c := min(max(int(math.Ceil(cpus)), 1), 255)
	mib := max((mem+(1<<20)-1)>>20, 64)
	return []string{"--cpus", strconv.Itoa(c), "--mem", strconv.FormatInt(mib, 10)}
}

// volume is a -v flag: a host folder at target (smolvm mounts folders
// only: src/data/storage.rs HostMount, "virtiofs limitation").
func volume(src, target string, ro bool) ([]string, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, exit.Usage(fmt.Errorf("mounting %s: %w", src, err))
	}
	if !fi.IsDir() {
		return nil, exit.Usagef("%s is a file: smolvm mounts folders only (README \"Known Limitations\")", src)
	}
	if strings.Contains(target, ":") {
		return nil, exit.Usagef("cannot mount %s at %s: smolvm reads a ':' there as a separator", src, target)
	}
	v := src + ":" + target
	if ro {
		v += ":ro"
	}
	return []string{"--volume", v}, nil
}

// creating records that this launch asks smolvm to create machine n.
func (l *launch) creating(n string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.created = append(l.created, n)
}

func (l *launch) createSidecar(ctx context.Context) error {
	e := l.Plan.Egress
	egress := l.Store.EgressDir(l.Plan.Slug)
	args := []string{"machine", "create", "--name", l.s.SidecarVM, "--image", l.rootfs}
	args = append(args, resources(l.s.SidecarLimits, plan.SidecarLimits)...)
	// Its way out is the host's: the one machine of the bottle with --net.
	args = append(args, "--net", "--network", l.s.Network)
	v, err := volume(egress, e.Dir, false)
	if err != nil {
		return err
	}
	args = append(args, v...)
	// References to the token values, never the values: smolvm resolves
	// them from the environment of the start below.
	for _, kv := range l.Tokens {
		k, _, _ := strings.Cut(kv, "=")
		args = append(args, "--secret-env", k+"="+k)
	}
	args = append(args, labelArgs(l.labels(names.RoleEgress))...)
	args = append(args, "--", sidecarBinary, "serve", "--listen", fmt.Sprintf(":%d", e.Port),
		"--routes", e.RoutesFile, "--ca-dir", e.CADir, "--log", e.LogFile, "--slug", l.Plan.Slug)
	if _, err := os.Stat(filepath.Join(egress, backend.UpstreamCAFile)); err == nil {
		args = append(args, "--upstream-ca", path.Join(e.Dir, backend.UpstreamCAFile))
	}
	if l.AllowPrivate {
		args = append(args, "--allow-private")
	}
	l.creating(l.s.SidecarVM)
	if err := l.t.run(ctx, nil, args...); err != nil {
		return clash(err, l.Plan.Slug)
	}
	return nil
}

// startSidecar starts the sidecar with the token values in smolvm's
// environment, this call's alone.
func (l *launch) startSidecar(ctx context.Context) error {
	return l.t.run(ctx, l.Tokens, "machine", "start", "--name", l.s.SidecarVM)
}

func (l *launch) createAgent(ctx context.Context) error {
	a := l.Plan.Agent
	args := []string{"machine", "create", "--name", l.s.VM}
	if l.pack != "" {
		args = append(args, "--from", l.pack)
	} else {
		args = append(args, "--image", l.archive)
	}
	args = append(args, resources(l.s.Limits, plan.AgentLimits)...)
	// No --net: the named network and an egress policy whose one address
	// is the sidecar's are its only way anywhere; and the few names the
	// policy lets the gateway forward go to the host's loopback, where
	// usually nothing answers (see the package doc).
	args = append(args, "--network", l.s.Network, "--allow-host", l.s.SidecarAddress, "--dns", agentDNS)
	mounts, err := l.agentMounts()
	if err != nil {
		return err
	}
	args = append(args, mounts...)
	env := make([]string, 0, len(a.Env))
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	for _, kv := range env {
		args = append(args, "--env", kv)
	}
	args = append(args, "--workdir", a.Workdir)
	args = append(args, labelArgs(l.labels(names.RoleAgent))...)
	args = append(args, "--")
	args = append(args, idleCommand...)
	l.creating(l.s.VM)
	if err := l.t.run(ctx, nil, args...); err != nil {
		return clash(err, l.Plan.Slug)
	}
	if l.archive != "" {
		// smolvm staged it in its own cache (src/data/image_source.rs).
		os.Remove(l.archive)
		l.archive = ""
	}
	return nil
}

// clash adds a hint to a create that failed on a name in use.
func clash(err error, slug string) error {
	if strings.Contains(err.Error(), "already exists") {
		return exit.WithHint(err, fmt.Sprintf("is bottle %s running? 'bb-launch stop %s' removes its machines", slug, slug))
	}
	return err
}

func (l *launch) startAgentVM(ctx context.Context) error {
	return l.t.run(ctx, nil, "machine", "start", "--name", l.s.VM)
}

// waitSidecar waits, from inside the agent's VM, until the sidecar answers
// at the plan's address: the one way out the agent has, proven before it
// starts.
func (l *launch) waitSidecar(ctx context.Context) error {
	return waitSidecar(ctx, l.t, l.Plan, l.ReadyTimeout)
}

func waitSidecar(ctx context.Context, t *tool, p *plan.Plan, timeout time.Duration) error {
	timeout = cmp.Or(timeout, 20*time.Second)
	addr := fmt.Sprintf("%s:%d", p.Egress.Host, p.Egress.Port)
	err := t.run(ctx, nil, "machine", "exec", "--name", p.Smolvm.VM, "--",
		GuestHelper, "guest", "dial", "--timeout", timeout.String(), addr)
	if err != nil {
		return exit.Backend(fmt.Errorf("the agent cannot reach its sidecar at %s (%s): %w", addr, p.Smolvm.SidecarAddress, err),
			fmt.Sprintf("the sidecar's audit log is %s; 'bb-egress routes %s' checks its routes", p.Egress.LogFile, p.Slug))
	}
	return nil
}

// startAgent runs the agent's command under the holder, detached. With
// Attach it waits for the session's first join to start, so that nothing
// it prints first is lost.
func (l *launch) startAgent(ctx context.Context) error {
	if l.BeforeStart != nil {
		if err := l.BeforeStart(ctx, l.s.VM); err != nil {
			return err
		}
	}
	s, err := startHolder(ctx, l.t, l.Plan, l.Attach)
	if err != nil {
		return err
	}
	l.session = s
	return nil
}

// startHolder starts the agent's command under bb-egress guest hold, and
// waits until the holder listens. With attach, the command waits for the
// returned session to join.
func startHolder(ctx context.Context, t *tool, p *plan.Plan, attach bool) (*session, error) {
	args := []string{"machine", "exec", "--name", p.Smolvm.VM, "--detach", "--", GuestHelper, "guest", "hold", "--socket", AgentSocket}
	if attach {
		args = append(args, "--wait")
	}
	args = append(append(args, "--"), p.Agent.Command...)
	if err := t.run(ctx, nil, args...); err != nil {
		return nil, err
	}
	s := &session{t: t, vm: p.Smolvm.VM, slug: p.Slug}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := s.status(ctx)
		if err != nil {
			return nil, err
		}
		if r.Running {
			break
		}
		if r.ExitCode != nil {
			return nil, exit.Backend(fmt.Errorf("the agent's command exited at once, with status %d", *r.ExitCode))
		}
		if time.Now().After(deadline) {
			return nil, exit.Backend(fmt.Errorf("the agent's terminal holder did not start in %s", p.Smolvm.VM))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !attach {
		return nil, nil
	}
	return s, nil
}
