package macoscontainer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/guest"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/workspace"
)

// ReadyLine is what bb-egress serve prints on stderr once it listens.
const ReadyLine = "bb-egress: listening on"

// GuestFolder is the bottle's folder the agent's container mounts
// read-only at GuestDir: the static bb-egress and the init's spec. Nothing
// else: the egress folder, with the CA's key, is the sidecar's alone.
const GuestFolder = "guest"

// launch is the backend's half of one launch: what it made so far, to
// undo.
type launch struct {
	*backend.Launching
	b *Backend
	m *plan.MacOSContainer

	sidecarRef, agentRef string
	socket               string
	created              []string // containers, by name
	session              *Session
	gitNew               bool // this launch made the bottle's git repository: the init seeds it, undo removes it
}

// Stages are the backend's steps of a launch, after the state is written.
func (l *launch) Stages() []backend.Stage {
	return []backend.Stage{
		{{{Name: "checking container", Run: l.checkTool}}},
		// One after the other, so that their progress does not interleave.
		{{{Name: "building the sidecar image", Run: l.sidecarImage}, {Name: "building the agent image", Run: l.agentImage}}},
		// The agent's container takes the sidecar's socket, which exists
		// once the sidecar runs: it is created after.
		{{{Name: "starting the sidecar", Run: l.startSidecar}}, {{Name: "preparing the agent", Run: l.prepare}}},
		{{{Name: "creating the agent", Run: l.createAgent}, {Name: "starting the agent", Run: l.startAgent}}},
	}
}

// Result is what the launch made.
func (l *launch) Result() backend.Record {
	r := backend.Record{AgentContainer: l.m.AgentContainer, SidecarContainer: l.m.SidecarContainer,
		AgentImage: l.agentRef, SidecarImage: l.sidecarRef, AgentID: l.m.AgentContainer}
	if l.session != nil {
		r.Session = l.session
	}
	return r
}

// Undo removes the containers the launch made, and any labelled with its
// id (a creation cut off before the CLI said it was done), never another
// bottle's.
func (l *launch) Undo(ctx context.Context, interrupted bool) {
	l.sweep(ctx)
	if interrupted {
		// A creation the interruption cut off may complete a moment later.
		time.Sleep(500 * time.Millisecond)
		l.sweep(ctx)
	}
	if l.socket != "" {
		removeSocket(l.socket)
	}
	if l.gitNew {
		l.b.tool.Output(ctx, "volume", "delete", names.GitVolume(l.Plan.Slug)) //nolint:errcheck // best effort
	}
}

func (l *launch) sweep(ctx context.Context) {
	ids := slices.Clone(l.created)
	if out, err := l.b.tool.Output(ctx, "list", "--all", "--format", "json"); err == nil {
		if cs, err := DecodeContainers(out); err == nil {
			for _, c := range cs {
				if c.Labels[names.LabelLaunch] == l.ID && !slices.Contains(ids, c.ID) {
					ids = append(ids, c.ID)
				}
			}
		}
	}
	for _, id := range ids {
		l.b.removeContainer(ctx, id) //nolint:errcheck // best effort
	}
}

// labels are a container's: the plan's, its role, this launch's id, and
// the backend's (tests).
func (l *launch) labels(role string) map[string]string {
	out := maps.Clone(l.m.Labels)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, l.b.Labels)
	out[names.LabelRole] = role
	out[names.LabelLaunch] = l.ID
	return out
}

func (l *launch) checkTool(ctx context.Context) error {
	_, err := l.b.check(ctx)
	return err
}

func (l *launch) sidecarImage(ctx context.Context) error {
	uid, gid := sidecarIDs(l.UID, l.GID)
	ref, err := l.b.images().ensureSidecar(ctx, l.SidecarBinary, uid, gid, l.Progress)
	if err != nil {
		return exit.Backend(err)
	}
	l.sidecarRef = ref
	return nil
}

// sidecarIDs is who the sidecar runs as: the person, who owns the egress
// folder; never root.
func sidecarIDs(uid, gid int) (int, int) {
	if uid == 0 {
		return backend.SidecarUser, backend.SidecarUser
	}
	return uid, gid
}

func (l *launch) agentImage(ctx context.Context) error {
	if l.Image != "" {
		l.agentRef = l.Image
		return nil
	}
	ds, err := docker.AgentSpec(l.Plan, l.BaseImage, l.BuildArgs)
	if err != nil {
		return err
	}
	ref, _, err := l.b.images().ensureAgent(ctx, AgentImageSpec{Repo: ds.Repo, Dockerfile: ds.Dockerfile, Files: ds.Files,
		BuildArgs: ds.BuildArgs, Labels: ds.Labels}, l.Progress)
	if err != nil {
		if base := ds.BuildArgs["BASE"]; base != "" {
			if im, ferr := l.b.images().find(ctx, base); ferr == nil && im == nil {
				return exit.Backend(err, fmt.Sprintf("the base image %s is not in container's images: build or pull it with container first", base))
			}
		}
		return exit.Backend(err)
	}
	l.agentRef = ref
	return nil
}

// startSidecar creates and starts the sidecar, and waits until it listens.
func (l *launch) startSidecar(ctx context.Context) error {
	sock, err := hostSocket(l.Store.BottleDir(l.Plan.Slug))
	if err != nil {
		return exit.Usage(err, "set BB_STATE_DIR to a shorter folder")
	}
	l.socket = sock
	return startSidecar(ctx, l.b, l.Launching, l.m, l.sidecarRef, sock, l.labels(names.RoleEgress), &l.created)
}

func startSidecar(ctx context.Context, b *Backend, o *backend.Launching, m *plan.MacOSContainer, image, sock string,
	labels map[string]string, created *[]string) error {
	dir := o.Store.EgressDir(o.Plan.Slug)
	e := o.Plan.Egress
	serve := []string{"--slug", o.Plan.Slug}
	// A resumed bottle keeps the upstream CA its first launch copied in.
	if _, err := os.Stat(filepath.Join(dir, backend.UpstreamCAFile)); err == nil || o.UpstreamCA != "" {
		serve = append(serve, "--upstream-ca", path.Join(e.Dir, backend.UpstreamCAFile))
	}
	if o.AllowPrivate {
		serve = append(serve, "--allow-private")
	}
	uid, gid := sidecarIDs(o.UID, o.GID)
	if o.UID == 0 {
		if err := backend.ChownTree(dir, uid, gid); err != nil {
			return err
		}
	}
	removeSocket(sock)
	var tokenNames []string
	for _, kv := range o.Tokens {
		k, _, _ := strings.Cut(kv, "=")
		tokenNames = append(tokenNames, k)
	}
	args := sidecarCreate(m.SidecarContainer, image, labels, uid, gid, m.SidecarLimits, dir, e, m.SidecarNetwork, sock, tokenNames, serve)
	if image != "" {
		// The token values are in the CLI's environment, for --env NAME.
		if _, err := b.tool.Run(ctx, Call{Args: args, Env: o.Tokens}); err != nil {
			return exit.Backend(fmt.Errorf("creating container %s: %w", m.SidecarContainer, err), clashHint(err, o.Plan.Slug)...)
		}
		*created = append(*created, m.SidecarContainer)
		o.Mark("created")
	}
	if _, err := b.tool.Output(ctx, "start", m.SidecarContainer); err != nil {
		return exit.Backend(fmt.Errorf("starting container %s: %w", m.SidecarContainer, err))
	}
	o.Mark("started")
	if err := b.waitLog(ctx, m.SidecarContainer, ReadyLine, cmp.Or(o.ReadyTimeout, 20*time.Second), "the sidecar"); err != nil {
		return err
	}
	if st, err := os.Stat(sock); err != nil || st.Mode().Type() != fs.ModeSocket {
		return exit.Backend(fmt.Errorf("the sidecar listens, but its socket is not at %s", sock))
	}
	o.Mark("ready")
	return nil
}

func clashHint(err error, slug string) []string {
	if err != nil && strings.Contains(err.Error(), "already exists") {
		return []string{fmt.Sprintf("is bottle %s running? 'bb-launch stop %s' removes its containers", slug, slug)}
	}
	return nil
}

// removeSocket removes a socket a stopped sidecar left; nothing else.
func removeSocket(p string) {
	if st, err := os.Lstat(p); err == nil && st.Mode().Type() == fs.ModeSocket {
		os.Remove(p)
	}
}

// waitLog reads the container's log until a line starts with ready. If the
// container stops, or the line does not come in time, the error quotes its
// last lines.
func (b *Backend) waitLog(ctx context.Context, name, ready string, timeout time.Duration, what string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last []string
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 250*time.Millisecond) {
		out, err := b.tool.Output(ctx, "logs", name)
		if err == nil {
			lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			for _, line := range lines {
				if strings.HasPrefix(line, ready) {
					return nil
				}
			}
			last = lines[max(0, len(lines)-10):]
		}
		if stopped, serr := b.stopped(ctx, name); serr == nil && stopped {
			// Its last words may have come between the two calls.
			if out, err := b.tool.Output(ctx, "logs", "-n", "10", name); err == nil {
				last = strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			}
			return exit.Backend(fmt.Errorf("%s exited; %s", what, lastLines(last)))
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return exit.Backend(fmt.Errorf("%s did not start within %v; %s", what, timeout, lastLines(last)))
			}
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func lastLines(lines []string) string {
	var kept []string
	for _, l := range lines {
		if l = strings.TrimSpace(printable(l)); l != "" {
			kept = append(kept, l)
		}
	}
	if len(kept) == 0 {
		return "it printed nothing"
	}
	return "its last lines:\n  " + strings.Join(kept, "\n  ")
}

// stopped says whether container name exists and is not running.
func (b *Backend) stopped(ctx context.Context, name string) (bool, error) {
	out, err := b.tool.Output(ctx, "list", "--all", "--format", "json")
	if err != nil {
		return false, err
	}
	cs, err := DecodeContainers(out)
	if err != nil {
		return false, err
	}
	for _, c := range cs {
		if c.ID == name {
			return !c.Running() && c.State != "stopping", nil
		}
	}
	return false, nil
}

// prepare makes the bottle's own git repository when it has none, and
// writes the bottle's guest folder: the static bb-egress the agent's init
// is, and its spec.
func (l *launch) prepare(ctx context.Context) error {
	if err := l.gitVolume(ctx); err != nil {
		return err
	}
	var gitDir string
	var seed []workspace.File
	if l.gitNew {
		var err error
		if seed, err = l.GitSeed(); err != nil {
			return err
		}
		gitDir = path.Join(l.Plan.Agent.Workdir, ".git")
	}
	return prepareGuest(l.Store, l.Plan, l.SidecarBinary, l.Attach, gitDir, seed)
}

// gitVolume makes the bottle's own git repository, a volume labelled as
// the bottle's, when it has none yet (a resumed bottle keeps its
// repository: the agent's commits), and the workspace's .git for it to be
// mounted on, where there is none.
func (l *launch) gitVolume(ctx context.Context) error {
	if !l.Git.OwnRepo {
		return nil
	}
	name := names.GitVolume(l.Plan.Slug)
	vs, err := l.b.volumes(ctx)
	if err != nil {
		return err
	}
	for _, v := range vs {
		if v.Name == name {
			return nil
		}
	}
	labels := map[string]string{names.LabelSlug: l.Plan.Slug, names.LabelRole: names.RoleGit,
		names.LabelAgent: l.Plan.Agent.Name, names.LabelLaunch: l.ID}
	maps.Copy(labels, l.b.Labels)
	args := append([]string{"volume", "create"}, labelArgs(labels)...)
	if _, err := l.b.tool.Output(ctx, append(args, name)...); err != nil {
		return exit.Backend(fmt.Errorf("making the bottle's git repository %s: %w", name, err))
	}
	l.gitNew = true
	made, err := l.MakeGitMountpoint()
	if err != nil {
		return err
	}
	l.MadeGitDir = l.MadeGitDir || made
	return nil
}

func prepareGuest(st *state.Store, p *plan.Plan, binary string, attach bool, gitDir string, seed []workspace.File) error {
	dir := filepath.Join(st.BottleDir(p.Slug), GuestFolder)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return exit.Backend(fmt.Errorf("making the agent's guest folder: %w", err))
	}
	if binary != "" {
		if err := copyBinary(binary, filepath.Join(dir, "bb-egress")); err != nil {
			return exit.Backend(fmt.Errorf("putting bb-egress in the agent's guest folder: %w", err))
		}
	}
	ca, err := os.ReadFile(filepath.Join(st.EgressDir(p.Slug), state.CACertFile))
	if err != nil {
		return exit.Backend(fmt.Errorf("reading the bottle's CA: %w", err))
	}
	spec, err := guestSpec(p, ca, attach, gitDir, seed)
	if err != nil {
		return exit.Usage(err)
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(filepath.Join(dir, "spec.json"), append(b, '\n'), 0o644)
}

// copyBinary puts a copy of the static bb-egress at dst, replacing what was
// there by rename. A copy, not a link: the agent's container mounts it,
// and the original is the one every bottle's sidecar image is built from.
func copyBinary(src, dst string) error {
	tmp := dst + ".new"
	os.Remove(tmp)
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// createAgent creates the agent's container, not started.
func (l *launch) createAgent(ctx context.Context) error {
	a := l.Plan.Agent
	mounts := []mountSpec{{Source: l.Workspace, Target: a.Workdir}}
	for _, g := range l.GitMounts() {
		mounts = append(mounts, mountSpec{Source: g.Source, Target: g.Target, ReadOnly: g.ReadOnly, Volume: g.Volume})
	}
	envFile, err := writeEnvFile(l.Store.BottleDir(l.Plan.Slug), a.Env)
	if err != nil {
		return err
	}
	defer os.Remove(envFile)
	args := agentCreate(l.m.AgentContainer, l.agentRef, l.labels(names.RoleAgent), a, l.m.Limits,
		filepath.Join(l.Store.BottleDir(l.Plan.Slug), GuestFolder), l.socket, mounts, envFile)
	if _, err := l.b.tool.Output(ctx, args...); err != nil {
		return exit.Backend(fmt.Errorf("creating container %s: %w", l.m.AgentContainer, err), clashHint(err, l.Plan.Slug)...)
	}
	l.created = append(l.created, l.m.AgentContainer)
	return nil
}

// writeEnvFile writes the agent's environment for --env-file: not the
// CLI's own environment, where the agent's HOME and proxy variables would
// be the CLI's. It holds no token (the plan's environment never does).
func writeEnvFile(dir string, env map[string]string) (string, error) {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(env)) {
		v := env[k]
		if strings.ContainsAny(k, "=\n\r\x00") || k == "" || strings.ContainsAny(v, "\n\r\x00") {
			return "", exit.Usagef("plan agent.env %q: a name or value an environment file cannot hold", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	f, err := os.CreateTemp(dir, ".agent-env-*")
	if err != nil {
		return "", exit.Backend(fmt.Errorf("writing the agent's environment: %w", err))
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", exit.Backend(fmt.Errorf("writing the agent's environment: %w", err))
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", exit.Backend(fmt.Errorf("writing the agent's environment: %w", err))
	}
	return f.Name(), nil
}

// startAgent starts the agent's container and waits until its init has
// provisioned and given root up. With Attach, the init holds the agent's
// command until the session joins.
func (l *launch) startAgent(ctx context.Context) error {
	if l.Attach {
		l.session = l.b.session(l.m.AgentContainer, l.Plan.Slug, l.Plan.Agent.User)
	}
	if l.BeforeStart != nil {
		if err := l.BeforeStart(ctx, l.m.AgentContainer); err != nil {
			return err
		}
	}
	return startAgent(ctx, l.b, l.m.AgentContainer, l.ReadyTimeout)
}

func startAgent(ctx context.Context, b *Backend, name string, timeout time.Duration) error {
	if _, err := b.tool.Output(ctx, "start", name); err != nil {
		return exit.Backend(fmt.Errorf("starting container %s: %w", name, err))
	}
	return b.waitLog(ctx, name, guest.ReadyLine, cmp.Or(timeout, 20*time.Second), "the agent's init")
}

// Restart starts the bottle's stopped agent container again, with what it
// holds, and its sidecar first if it stopped. Of o it uses Plan, Store,
// Attach, ReadyTimeout, Progress and SidecarBinary. A failure removes
// nothing: the container is the person's work.
func (b *Backend) Restart(ctx context.Context, o backend.LaunchOptions) (*backend.Record, error) {
	p := o.Plan
	if err := backend.CheckPlan(p, names.MacOSContainer); err != nil {
		return nil, err
	}
	if err := checkPlan(p); err != nil {
		return nil, err
	}
	m := p.MacOSContainer
	unlock, err := o.Store.Lock(ctx, p.Slug)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := b.check(ctx); err != nil {
		return nil, &backend.StepError{Step: "checking container", Err: err}
	}
	cs, err := b.containers(ctx, p.Slug)
	if err != nil {
		return nil, err
	}
	agent, sidecar := role(cs, names.RoleAgent), role(cs, names.RoleEgress)
	switch {
	case agent == nil:
		return nil, exit.Usagef("bottle %s has no agent container to restart", p.Slug)
	case agent.Running():
		return nil, exit.Usagef("bottle %s is running", p.Slug)
	case sidecar == nil:
		return nil, exit.Usage(fmt.Errorf("bottle %s's agent container is stopped, but its sidecar is gone", p.Slug),
			fmt.Sprintf("'bb-launch resume --discard %s' removes the container, and what it holds beyond its newest snapshot, and boots the snapshot", p.Slug))
	}
	l := &backend.Launching{LaunchOptions: o}
	if !sidecar.Running() {
		sock, err := hostSocket(o.Store.BottleDir(p.Slug))
		if err != nil {
			return nil, &backend.StepError{Step: "starting the sidecar", Err: exit.Usage(err)}
		}
		if err := startSidecar(ctx, b, l, m, "", sock, nil, nil); err != nil {
			return nil, &backend.StepError{Step: "starting the sidecar", Err: err}
		}
	}
	if err := prepareGuest(o.Store, p, o.SidecarBinary, o.Attach, "", nil); err != nil {
		return nil, &backend.StepError{Step: "preparing the agent", Err: err}
	}
	rec := &backend.Record{Slug: p.Slug, Backend: names.MacOSContainer, AgentContainer: m.AgentContainer,
		SidecarContainer: m.SidecarContainer, AgentImage: agent.Image, SidecarImage: sidecar.Image, AgentID: m.AgentContainer}
	if o.Attach {
		rec.Session = b.session(m.AgentContainer, p.Slug, p.Agent.User)
	}
	if o.BeforeStart != nil {
		if err := o.BeforeStart(ctx, m.AgentContainer); err != nil {
			return nil, &backend.StepError{Step: "starting the agent", Err: err}
		}
	}
	if err := startAgent(ctx, b, m.AgentContainer, o.ReadyTimeout); err != nil {
		return nil, &backend.StepError{Step: "starting the agent", Err: err}
	}
	return rec, nil
}
