package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
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
	ContainerCommit(ctx context.Context, container string, opts client.ContainerCommitOptions) (client.ContainerCommitResult, error)
	VolumeCreate(ctx context.Context, opts client.VolumeCreateOptions) (client.VolumeCreateResult, error)
	VolumeInspect(ctx context.Context, name string, opts client.VolumeInspectOptions) (client.VolumeInspectResult, error)
	VolumeRemove(ctx context.Context, name string, opts client.VolumeRemoveOptions) (client.VolumeRemoveResult, error)
	VolumeList(ctx context.Context, opts client.VolumeListOptions) (client.VolumeListResult, error)
	ImageList(ctx context.Context, opts client.ImageListOptions) (client.ImageListResult, error)
	Info(ctx context.Context, opts client.InfoOptions) (client.SystemInfoResult, error)
	ImageTag(ctx context.Context, opts client.ImageTagOptions) (client.ImageTagResult, error)
}

var _ Engine = (*client.Client)(nil)

// labels are a resource's labels: the plan's, this launch's and, in tests,
// bb.test.
func (l *launch) labels(m map[string]string) map[string]string {
	out := withTestLabels(m)
	out[names.LabelLaunch] = l.ID
	return out
}

// launch is the Docker half of one launch in progress: what it made so
// far, to undo.
type launch struct {
	*backend.Launching
	api Engine
	d   *plan.Docker

	sidecarRef string
	agentRef   string
	networkIDs []string
	sidecarID  string
	sidecarIP  string
	agentID    string
	session    *Session
	gitNew     bool // this launch made the bottle's git repository: provisioning seeds it, undo removes it

	agentImageID string
	ncpu         int // the engine's CPUs
	// storage is the engine's storage driver and backing filesystem, for
	// the writable layer's bound; diskLimit what the agent got ("" none).
	storage   storage
	diskLimit string
	// waits: the agent's command waits for the sidecar itself (its
	// image has a shell), so the agent starts without waiting for it.
	waits bool
	// sidecarDone is closed when the sidecar's lane has ended, sidecarOK
	// set before if it answers and the agent's hosts file names it.
	sidecarDone chan struct{}
	sidecarOK   bool
}

// Stages are the Docker steps of a launch, after the state is written.
func (l *launch) Stages() []backend.Stage {
	l.sidecarDone = make(chan struct{})
	return []backend.Stage{
		// The images one after the other, so that their progress does not
		// interleave; the networks meanwhile.
		{{{Name: "building the sidecar image", Run: l.sidecarImage}, {Name: "building the agent image", Run: l.agentImage}},
			{{Name: "creating the networks", Run: l.networks}}},
		// The sidecar starts while the agent is made ready and started: its
		// command waits until the sidecar answers (waitCommand), and it has
		// no other way out meanwhile. An image with no shell to wait in
		// starts once the sidecar answers.
		{{{Name: "starting the sidecar", Run: l.startSidecar}},
			{{Name: "creating the agent", Run: l.createAgent}, {Name: "provisioning the agent", Run: l.provision},
				{Name: "starting the agent", Run: l.startAgent}}},
	}
}

// Result is what the launch made.
func (l *launch) Result() backend.Record {
	r := backend.Record{AgentContainer: l.d.AgentContainer, SidecarContainer: l.d.SidecarContainer,
		AgentImage: l.agentRef, SidecarImage: l.sidecarRef, AgentID: l.agentID, DiskLimit: diskNote(l.diskLimit, l.storage)}
	if l.session != nil {
		r.Session = l.session
	}
	return r
}

// Undo removes what the launch made, only that, by ID and by the launch's
// label: a clash with another bottle's containers or networks must not
// remove them.
func (l *launch) Undo(ctx context.Context, interrupted bool) {
	if l.session != nil {
		l.session.Close()
	}
	for _, id := range []string{l.agentID, l.sidecarID} {
		if id != "" {
			removeContainer(ctx, l.api, id) //nolint:errcheck // best effort
		}
	}
	if l.gitNew {
		l.api.VolumeRemove(ctx, names.GitVolume(l.Plan.Slug), client.VolumeRemoveOptions{Force: true}) //nolint:errcheck // best effort
	}
	l.sweep(ctx)
	if interrupted {
		// A creation the interruption cut off may complete in the engine
		// a moment later.
		time.Sleep(500 * time.Millisecond)
		l.sweep(ctx)
	}
}

// sweep removes the containers, then the networks, labelled with this
// launch's id.
func (l *launch) sweep(ctx context.Context) {
	f := client.Filters{}.Add("label", names.LabelLaunch+"="+l.ID)
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

// ResolvConfFile is the agent's /etc/resolv.conf, kept in the bottle's
// folder.
const ResolvConfFile = "resolv.conf"

// resolvConf points the agent's resolver at loopback, where nothing
// listens: the agent resolves nothing by itself (bb.egress is in its
// /etc/hosts, and the sidecar resolves everything else). Docker's embedded
// DNS server would otherwise forward any name to the host's resolvers — a
// way out through DNS queries that no proxy sees.
const resolvConf = "# bb: the agent resolves no names; its proxy does.\nnameserver 127.0.0.1\noptions ndots:0 timeout:1 attempts:1\n"

// HostsFile is the agent's /etc/hosts, kept in the bottle's folder: its
// only way to a name (see resolvConf) is bb.egress, the sidecar.
const HostsFile = "hosts"

func (l *launch) writeHosts(sidecarIP string) error {
	text := "127.0.0.1\tlocalhost\n127.0.1.1\t" + l.Plan.Slug + "\n"
	if sidecarIP != "" {
		text += sidecarIP + "\t" + l.Plan.Egress.Host + "\n"
	}
	p := filepath.Join(l.Store.BottleDir(l.Plan.Slug), HostsFile)
	// Written in place once it exists: a container that runs has the file
	// bound, and sees a rename as nothing. One write of a few bytes: the
	// agent's wait reads it whole or not at all.
	if f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0); err == nil {
		_, werr := f.Write([]byte(text))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("writing %s: %w", p, werr)
		}
		return nil
	}
	return state.WriteFileAtomic(p, []byte(text), 0o644)
}

// waitCommand is cmd started once host is in /etc/hosts, which bb writes
// there only when the sidecar answers: the agent's command starts then,
// while its container was started with the sidecar's.
func waitCommand(cmd []string, host string) []string {
	re := strings.ReplaceAll(host, ".", `\.`)
	script := `until grep -qs '[[:space:]]` + re + `$' /etc/hosts; do sleep 0.02; done; exec "$@"`
	return append([]string{"/bin/sh", "-c", script, "bb-wait"}, cmd...)
}

func (l *launch) sidecarImage(ctx context.Context) error {
	ref, err := EnsureSidecarImage(ctx, l.api, l.SidecarBinary, l.Progress)
	l.sidecarRef = ref
	return err
}

func (l *launch) agentImage(ctx context.Context) error {
	if l.Image != "" {
		l.agentRef = l.Image
	} else {
		spec, err := AgentSpec(l.Plan, l.BaseImage, l.BuildArgs)
		if err != nil {
			return err
		}
		ref, _, err := EnsureAgentImage(ctx, l.api, spec, l.Progress)
		l.agentRef = ref
		if err != nil && l.BaseImage == "" && pullFailed(err) {
			return exit.WithHint(err, baseHint(ctx, l.api)...)
		}
		if err != nil {
			return err
		}
	}
	// Its ID names what provisioning learned of its files (imageFacts).
	res, err := l.api.ImageInspect(ctx, l.agentRef)
	if err != nil {
		return exit.Backend(fmt.Errorf("inspecting image %s: %w", l.agentRef, err))
	}
	l.agentImageID = res.ID
	return nil
}

// pullFailed reports whether a build failed at its FROM, getting the base
// image from a registry: no registry answers, or it would not give it.
func pullFailed(err error) bool {
	var be *BuildError
	if !errors.As(err, &be) || !strings.Contains(be.Step, "FROM") {
		return false
	}
	m := strings.ToLower(be.Message)
	for _, s := range []string{"registry", "no such host", "pull access denied", "manifest unknown", "dial tcp",
		"i/o timeout", "connection refused", "tls handshake", "not found", "unauthorized"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// baseHint says how to build on a base the engine has: the offline ones
// scripts/base-image makes (labelled bb.role=base), or how to make one.
func baseHint(ctx context.Context, api Engine) []string {
	var bases []string
	f := client.Filters{}.Add("label", names.LabelRole+"=base")
	if res, err := api.ImageList(ctx, client.ImageListOptions{Filters: f}); err == nil {
		for _, im := range res.Items {
			for _, t := range im.RepoTags {
				if t != "<none>:<none>" {
					bases = append(bases, t)
				}
			}
		}
	}
	slices.Sort(bases)
	if len(bases) == 0 {
		return []string{"the image's base could not be pulled, and this engine has no offline base: make one with " +
			"'make base-image' in bb's sources (debootstrap, no registry), then run the same command with BB_BASE_IMAGE=" + BaseImage + " before it"}
	}
	return []string{fmt.Sprintf("the image's base could not be pulled, but this engine has the offline base %s: "+
		"run the same command with BB_BASE_IMAGE=%s before it (e.g. BB_BASE_IMAGE=%s bb start AGENT), or export it",
		strings.Join(bases, ", "), bases[0], bases[0])}
}

// AddLabels adds labels to every image, container and network this package
// creates from then on. Tests of other packages mark theirs bb.test=1 with
// it, so that a sweep after them finds what they made.
func AddLabels(m map[string]string) { testLabels = withTestLabels(m) }
