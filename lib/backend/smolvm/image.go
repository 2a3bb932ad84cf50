package smolvm

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/state"
)

// dockerHint is said where the agent image cannot be built.
const dockerHint = "smolvm boots images but does not build them: bb builds the agent's with a Docker Engine " +
	"(Docker Desktop, OrbStack, colima, or dockerd): start one, or resume the bottle from a snapshot"

// agentImage makes what the agent's machine boots: the snapshot to resume
// (l.Image naming one), else the agent image — the one l.Image names, or
// the plan's, built as the Docker backend builds it — saved as a `docker
// save` archive in the bottle's folder for smolvm to stage.
func (l *launch) agentImage(ctx context.Context) error {
	if l.Image != "" && isSnapshot(l.Image) {
		p, err := snapshotPath(l.Store.Dir, l.Image)
		if err != nil {
			return err
		}
		if _, err := os.Stat(p); err != nil {
			return exit.Usage(fmt.Errorf("the snapshot %s: %w", l.Image, err))
		}
		l.pack, l.agentRef = p, l.Image
		return nil
	}
	api, err := docker.Connect(ctx)
	if err != nil {
		return exit.WithHint(err, dockerHint)
	}
	defer api.Close()
	ref := l.Image
	if ref == "" {
		spec, err := docker.AgentSpec(l.Plan, l.BaseImage, l.BuildArgs)
		if err != nil {
			return err
		}
		if ref, _, err = docker.EnsureAgentImage(ctx, api, spec, l.Progress); err != nil {
			return err
		}
	}
	l.agentRef = ref
	dir := filepath.Join(l.Store.BottleDir(l.Plan.Slug), StateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "agent-image-*.tar")
	if err != nil {
		return err
	}
	l.archive = f.Name()
	res, err := api.ImageSave(ctx, []string{ref})
	if err == nil {
		_, err = io.Copy(f, res)
		res.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return exit.Backend(fmt.Errorf("saving the image %s for smolvm: %w", ref, err))
	}
	return nil
}

// StateDir is the backend's folder in a bottle's state folder: the
// sidecar's root filesystem, the agent image on its way to smolvm, and the
// files provisioning copies.
const StateDir = "smolvm"

// sidecarRootfs lays out the sidecar's root filesystem in the bottle's
// folder: the static bb-egress and the host's CA roots (an image FROM
// scratch has none, and bb-egress verifies upstreams against them). It is
// laid out again at every launch, so a new bb-egress is the one that runs.
func (l *launch) sidecarRootfs(context.Context) error {
	root := filepath.Join(l.Store.BottleDir(l.Plan.Slug), StateDir, "sidecar")
	l.rootfs = root
	bin, err := os.ReadFile(l.SidecarBinary)
	if err != nil {
		return exit.Usage(fmt.Errorf("reading the sidecar binary: %w", err))
	}
	if err := backend.CheckStatic(l.SidecarBinary, bin); err != nil {
		return exit.Usage(err)
	}
	for _, d := range []string{"tmp", "etc/ssl/certs", l.Plan.Egress.Dir} {
		if err := os.MkdirAll(filepath.Join(root, filepath.FromSlash(d)), 0o755); err != nil {
			return err
		}
	}
	if err := state.WriteFileAtomic(filepath.Join(root, path.Base(sidecarBinary)), bin, 0o755); err != nil {
		return err
	}
	if roots := hostRoots(); roots != nil {
		if err := state.WriteFileAtomic(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"), roots, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// hostRoots reads the host's CA bundle: where Linux distributions keep
// it, or macOS's export of its system roots.
func hostRoots() []byte {
	for _, p := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem"} {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			return b
		}
	}
	return nil
}

// imageExists says whether the Docker engine has ref; no engine, no image.
func imageExists(ctx context.Context, ref string) (bool, error) {
	api, err := docker.Connect(ctx)
	if err != nil {
		return false, nil
	}
	defer api.Close()
	return docker.ImageExists(ctx, api, ref)
}
