package docker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
)

// ReadyLine is what bb-egress serve prints on stderr once it listens.
const ReadyLine = "bb-egress: listening on"

// resources are a container's limits: the plan's, but never none. A plan
// is input (a hand-edited one, an old one), and a zero limit would be no
// limit: floor's stand in for it.
func resources(lim, floor plan.Limits) container.Resources {
	if lim.PidsLimit <= 0 {
		lim.PidsLimit = floor.PidsLimit
	}
	if lim.MemoryBytes <= 0 {
		lim.MemoryBytes, _ = plan.ParseMemory(floor.Memory)
	}
	pids := lim.PidsLimit
	return container.Resources{
		Memory:     lim.MemoryBytes,
		MemorySwap: lim.MemoryBytes, // no swap beyond the limit
		NanoCPUs:   int64(lim.CPUs * 1e9),
		PidsLimit:  &pids,
	}
}

// agentResources are the plan's limits for the agent, with its CPUs below
// the engine's count, however many the plan asks for: an agent busy on
// every core leaves the person's machine (and the sidecar, which it
// shares) none.
func (l *launch) agentResources(ctx context.Context) container.Resources {
	r := resources(l.d.Limits, plan.AgentLimits)
	if l.ncpu <= 0 {
		info, err := l.api.Info(ctx, client.InfoOptions{})
		if err != nil || info.Info.NCPU <= 0 {
			return r
		}
		l.ncpu = info.Info.NCPU
	}
	ncpu := float64(l.ncpu)
	most := max(ncpu-1, 0.75*ncpu)
	if r.NanoCPUs == 0 || float64(r.NanoCPUs)/1e9 > most {
		r.NanoCPUs = int64(most * 1e9)
	}
	return r
}

// startSidecar creates, connects and starts the sidecar, and waits until it
// listens.
func (l *launch) startSidecar(ctx context.Context) error {
	defer close(l.sidecarDone)
	dir := l.Store.EgressDir(l.Plan.Slug)
	e := l.Plan.Egress
	cmd := []string{"--listen", fmt.Sprintf(":%d", e.Port), "--routes", e.RoutesFile, "--ca-dir", e.CADir, "--log", e.LogFile, "--slug", l.Plan.Slug}
	// A resumed bottle keeps the upstream CA its first launch copied in.
	if _, err := os.Stat(filepath.Join(dir, backend.UpstreamCAFile)); err == nil || l.UpstreamCA != "" {
		cmd = append(cmd, "--upstream-ca", filepath.Join(e.Dir, backend.UpstreamCAFile))
	}
	if l.AllowPrivate {
		cmd = append(cmd, "--allow-private")
	}
	// The sidecar runs as the invoking user, who owns the egress folder;
	// never as root, which the engine's root would be on the host's files.
	uid, gid := l.UID, l.GID
	if uid == 0 {
		uid, gid = SidecarUser, SidecarUser
		if err := backend.ChownTree(dir, uid, gid); err != nil {
			return err
		}
	}
	res, err := l.api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:  l.d.SidecarContainer,
		Image: l.sidecarRef,
		Config: &container.Config{
			Entrypoint: []string{"/bb-egress", "serve"},
			Cmd:        cmd,
			// The token values live here and nowhere else.
			Env:      l.Tokens,
			User:     fmt.Sprintf("%d:%d", uid, gid),
			Hostname: "bb-egress",
			Labels:   l.labels(l.d.SidecarLabels),
		},
		HostConfig: &container.HostConfig{
			NetworkMode: container.NetworkMode(l.d.InternalNetwork),
			// A folder, not files: bb-egress apply replaces routes.yaml by
			// rename, which a file mount would never show.
			Mounts:         []mount.Mount{{Type: mount.TypeBind, Source: dir, Target: e.Dir}},
			ReadonlyRootfs: true,
			CapDrop:        capDrop(l.d.CapDrop),
			SecurityOpt:    securityOpt(l.d.SecurityOpt),
			Resources:      resources(l.d.SidecarLimits, plan.SidecarLimits),
			Tmpfs:          map[string]string{"/tmp": "rw,noexec,nosuid,size=16m"},
			// It sits on both networks: it must never route a packet from
			// one to the other, only proxy what it decides on.
			Sysctls: map[string]string{"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0"},
		},
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			l.d.InternalNetwork: {Aliases: []string{e.Host}},
		}},
	})
	if err != nil {
		return exit.Backend(fmt.Errorf("creating container %s: %w", l.d.SidecarContainer, err), clashHint(err, l.Plan.Slug)...)
	}
	l.sidecarID = res.ID
	l.Mark("created")
	// The engine (API < 1.44) takes one network at creation; the way out is
	// joined before the start.
	if _, err := l.api.NetworkConnect(ctx, l.d.EgressNetwork, client.NetworkConnectOptions{Container: res.ID}); err != nil {
		return exit.Backend(fmt.Errorf("connecting %s to %s: %w", l.d.SidecarContainer, l.d.EgressNetwork, err))
	}
	l.Mark("connected")
	if _, err := l.api.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return exit.Backend(fmt.Errorf("starting container %s: %w", l.d.SidecarContainer, err))
	}
	l.Mark("started")
	timeout := l.ReadyTimeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	if err := waitReady(ctx, l.api, res.ID, timeout); err != nil {
		return err
	}
	l.Mark("ready")
	if err := l.sidecarAddress(ctx); err != nil {
		return err
	}
	// The agent learns its way out, and its waiting command starts.
	if err := l.writeHosts(l.sidecarIP); err != nil {
		return err
	}
	l.sidecarOK = true
	return nil
}

// sidecarAddress finds the sidecar's address on the internal network, which
// the agent's /etc/hosts gives bb.egress.
func (l *launch) sidecarAddress(ctx context.Context) error {
	in, err := l.api.ContainerInspect(ctx, l.sidecarID, client.ContainerInspectOptions{})
	if err != nil {
		return exit.Backend(fmt.Errorf("inspecting container %s: %w", l.d.SidecarContainer, err))
	}
	if ns := in.Container.NetworkSettings; ns != nil {
		if ep := ns.Networks[l.d.InternalNetwork]; ep != nil && ep.IPAddress.IsValid() {
			l.sidecarIP = ep.IPAddress.String()
		}
	}
	if l.sidecarIP == "" {
		return exit.Backend(fmt.Errorf("container %s has no address on %s", l.d.SidecarContainer, l.d.InternalNetwork))
	}
	return nil
}

// SidecarUser is the uid and gid the sidecar runs as when bb-launch runs as
// root.
const SidecarUser = backend.SidecarUser

// capDrop is the plan's list with ALL always in it.
func capDrop(list []string) []string {
	out := slices.Clone(list)
	if !slices.ContainsFunc(out, func(c string) bool { return strings.EqualFold(c, "ALL") }) {
		out = append(out, "ALL")
	}
	return out
}

// securityOpt is the plan's list (checkSecurityOpt passed it) with
// no-new-privileges always in it.
func securityOpt(list []string) []string {
	out := slices.Clone(list)
	if !slices.ContainsFunc(out, func(o string) bool { return strings.HasPrefix(o, "no-new-privileges") }) {
		out = append(out, "no-new-privileges")
	}
	return out
}

// checkSecurityOpt refuses the options that switch a confinement off.
func checkSecurityOpt(list []string) error {
	for _, o := range list {
		k, v, _ := strings.Cut(strings.ToLower(o), "=")
		if k2, v2, ok := strings.Cut(k, ":"); ok && v == "" {
			k, v = k2, v2
		}
		if v == "unconfined" || (k == "label" && v == "disable") || (k == "no-new-privileges" && v == "false") {
			return exit.Usagef("plan docker.security_opt %q switches a confinement off", o)
		}
	}
	return nil
}

func clashHint(err error, slug string) []string {
	if err != nil && strings.Contains(err.Error(), "already in use") {
		return []string{fmt.Sprintf("is bottle %s running? 'bb-launch stop %s' removes its containers and networks", slug, slug)}
	}
	return nil
}

// waitReady follows the sidecar's output until it says it listens. If it
// exits, or does not say so in time, the error quotes its last lines.
func waitReady(ctx context.Context, api Engine, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	logs, err := api.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		return exit.Backend(fmt.Errorf("reading the sidecar's output: %w", err))
	}
	defer logs.Close()
	pr, pw := io.Pipe()
	go func() { _, err := stdcopy.StdCopy(pw, pw, logs); pw.CloseWithError(err) }()
	var last []string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, ReadyLine) {
			return nil
		}
		if last = append(last, line); len(last) > 10 {
			last = last[1:]
		}
	}
	tail := "it printed nothing"
	if len(last) > 0 {
		tail = "its last lines:\n  " + strings.Join(last, "\n  ")
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return exit.Backend(fmt.Errorf("the sidecar did not listen within %v; %s", timeout, tail))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return exit.Backend(fmt.Errorf("the sidecar exited; %s", tail))
}

// createAgent creates the agent's container, not started: provisioning
// copies files into it first.
func (l *launch) createAgent(ctx context.Context) error {
	a := l.Plan.Agent
	ws := l.Workspace // checked by backend.Launch
	if err := l.gitVolume(ctx); err != nil {
		return err
	}
	dir := l.Store.BottleDir(l.Plan.Slug)
	if err := state.WriteFileAtomic(filepath.Join(dir, ResolvConfFile), []byte(resolvConf), 0o644); err != nil {
		return err
	}
	// The container is created before the sidecar has an address: the
	// file must exist to be mounted, and gets bb.egress at the start.
	if err := l.writeHosts(""); err != nil {
		return err
	}
	env := make([]string, 0, len(a.Env))
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	cmd := slices.Clone(a.Command)
	if f := readFacts(l.Store, l.agentImageID); f.Shell != nil && *f.Shell {
		cmd, l.waits = waitCommand(cmd, l.Plan.Egress.Host), true
	}
	yes := true
	opts := client.ContainerCreateOptions{
		Name:  l.d.AgentContainer,
		Image: l.agentRef,
		Config: &container.Config{
			Cmd:        cmd,
			Env:        env,
			User:       a.User,
			WorkingDir: a.Workdir,
			Hostname:   l.Plan.Slug,
			Tty:        true,
			OpenStdin:  true,
			Labels:     l.labels(l.d.AgentLabels),
		},
		HostConfig: &container.HostConfig{
			// The internal network only: the sidecar is its one way out.
			NetworkMode: container.NetworkMode(l.d.InternalNetwork),
			Mounts: append([]mount.Mount{
				{Type: mount.TypeBind, Source: ws, Target: a.Workdir},
				{Type: mount.TypeBind, Source: filepath.Join(l.Store.BottleDir(l.Plan.Slug), ResolvConfFile),
					Target: "/etc/resolv.conf", ReadOnly: true},
				{Type: mount.TypeBind, Source: filepath.Join(l.Store.BottleDir(l.Plan.Slug), HostsFile),
					Target: "/etc/hosts", ReadOnly: true},
			}, l.mounts(l.GitMounts())...),
			// The embedded DNS server (127.0.0.11, still reachable by
			// address) forwards what it does not know to these servers,
			// queried from inside the container: loopback, where nothing
			// listens, so it forwards nowhere.
			DNS:         []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			CapDrop:     capDrop(l.d.CapDrop),
			SecurityOpt: securityOpt(l.d.SecurityOpt),
			Resources:   l.agentResources(ctx),
			Init:        &yes,
			// Scratch space is memory, counted against the agent's limit,
			// and bounded: what the agent leaves there cannot fill the
			// host's disk (nor is it in a snapshot, as /tmp never is).
			Tmpfs: map[string]string{"/tmp": "rw,nosuid,nodev,size=1g,mode=1777", "/var/tmp": "rw,nosuid,nodev,size=1g,mode=1777"},
		},
	}
	// The writable layer is bounded where the engine's storage takes a
	// size; an engine that turns it down after all gets the container
	// without, and the record says so.
	disk := l.d.Limits.Disk
	if disk == "" {
		disk = plan.AgentLimits.Disk
	}
	if l.storage.sized() {
		opts.HostConfig.StorageOpt = map[string]string{"size": disk}
	}
	res, err := l.api.ContainerCreate(ctx, opts)
	if err != nil && opts.HostConfig.StorageOpt != nil && storageOptRefused(err) {
		l.storage.refused = err.Error()
		opts.HostConfig.StorageOpt = nil
		res, err = l.api.ContainerCreate(ctx, opts)
	}
	if err == nil && opts.HostConfig.StorageOpt != nil {
		l.diskLimit = disk
	}
	if err != nil {
		return exit.Backend(fmt.Errorf("creating container %s: %w", l.d.AgentContainer, err), clashHint(err, l.Plan.Slug)...)
	}
	l.agentID = res.ID
	return nil
}

func (l *launch) startAgent(ctx context.Context) error {
	if !l.waits {
		// No shell to wait in: it starts once the sidecar answers.
		select {
		case <-l.sidecarDone:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !l.sidecarOK {
			return errors.New("the sidecar did not start")
		}
	}
	if l.Attach {
		s, err := OpenAttach(ctx, l.api, l.agentID)
		if err != nil {
			return err
		}
		l.session = s // undo closes it if the start fails
	}
	if l.BeforeStart != nil {
		if err := l.BeforeStart(ctx, l.agentID); err != nil {
			return err
		}
	}
	if _, err := l.api.ContainerStart(ctx, l.agentID, client.ContainerStartOptions{}); err != nil {
		return exit.Backend(fmt.Errorf("starting container %s: %w", l.d.AgentContainer, err))
	}
	return nil
}

// bindMounts are ms as the engine's bind mounts.
func (l *launch) mounts(ms []backend.Mount) []mount.Mount {
	out := make([]mount.Mount, len(ms))
	for i, m := range ms {
		out[i] = mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
		if m.Volume {
			// NoCopy: nothing of the image's is copied into it.
			out[i] = mount.Mount{Type: mount.TypeVolume, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly,
				VolumeOptions: &mount.VolumeOptions{NoCopy: true}}
		}
	}
	return out
}

// gitVolume makes the bottle's own git repository, a volume, when it has
// none yet (a resumed bottle keeps its repository: the agent's commits),
// and the workspace's .git for it to be mounted on, where there is none.
// A new one is seeded by provisioning (l.gitNew).
func (l *launch) gitVolume(ctx context.Context) error {
	if !l.Git.OwnRepo {
		return nil
	}
	name := names.GitVolume(l.Plan.Slug)
	if _, err := l.api.VolumeInspect(ctx, name, client.VolumeInspectOptions{}); err == nil {
		return nil
	} else if !isNotFound(err) {
		return exit.Backend(fmt.Errorf("looking for the bottle's git repository %s: %w", name, err))
	}
	labels := withTestLabels(map[string]string{names.LabelSlug: l.Plan.Slug, names.LabelRole: names.RoleGit,
		names.LabelAgent: l.Plan.Agent.Name})
	if _, err := l.api.VolumeCreate(ctx, client.VolumeCreateOptions{Name: name, Labels: labels}); err != nil {
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

// removeContainer force-removes a container; one already gone is no error.
func removeContainer(ctx context.Context, api Engine, id string) error {
	_, err := api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !isNotFound(err) {
		return exit.Backend(fmt.Errorf("removing container %s: %w", id, err))
	}
	return nil
}

// bottleContainers lists the containers labelled with slug (and role, when
// not empty), running or not.
func bottleContainers(ctx context.Context, api Engine, slug, role string) ([]container.Summary, error) {
	f := client.Filters{}.Add("label", names.LabelSlug+"="+slug)
	if role != "" {
		f = f.Add("label", names.LabelRole+"="+role)
	}
	res, err := api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("listing the containers of bottle %s: %w", slug, err))
	}
	return res.Items, nil
}

// Stop removes a bottle's containers and networks, found by their label;
// a bottle with none is already stopped. Its state is not touched.
func Stop(ctx context.Context, api Engine, slug string) error {
	if err := state.CheckSlug(slug); err != nil {
		return exit.Usage(err)
	}
	cs, err := bottleContainers(ctx, api, slug, "")
	if err != nil {
		return err
	}
	// The agent first, so it never runs without its sidecar.
	slices.SortStableFunc(cs, func(a, b container.Summary) int {
		return boolInt(a.Labels[names.LabelRole] != names.RoleAgent) - boolInt(b.Labels[names.LabelRole] != names.RoleAgent)
	})
	var errs []error
	for _, c := range cs {
		if c.Labels[names.LabelRole] == names.RoleEgress && c.State == container.StateRunning {
			drainSidecar(ctx, api, c.ID)
		}
		errs = append(errs, removeContainer(ctx, api, c.ID))
	}
	ns, err := bottleNetworks(ctx, api, slug)
	if err != nil {
		return err
	}
	for _, id := range ns {
		errs = append(errs, removeNetwork(ctx, api, id))
	}
	return errors.Join(errs...)
}

// sidecarDrain is how long a stop waits for the sidecar to end by itself
// on SIGTERM: its --drain (10s) and a little more, so that every request
// that reached an upstream gets its line in the audit log before the
// container is gone. A sidecar with nothing in flight ends at once.
const sidecarDrain = 12 * time.Second

// drainSidecar asks the sidecar to end and waits for it, up to
// sidecarDrain; what is still running after is removed by force.
func drainSidecar(ctx context.Context, api Engine, id string) {
	ctx, cancel := context.WithTimeout(ctx, sidecarDrain)
	defer cancel()
	wait := api.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	if _, err := api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "TERM"}); err != nil {
		return
	}
	select {
	case <-wait.Result:
	case <-wait.Error:
	case <-ctx.Done():
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FindContainer returns the ID of a bottle's container of role, and
// whether it is running; "" when there is none.
func FindContainer(ctx context.Context, api Engine, slug, role string) (id string, running bool, err error) {
	cs, err := bottleContainers(ctx, api, slug, role)
	if err != nil || len(cs) == 0 {
		return "", false, err
	}
	c := cs[0]
	return c.ID, c.State == container.StateRunning || c.State == container.StatePaused, nil
}
