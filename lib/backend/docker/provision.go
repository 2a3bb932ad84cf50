package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
)

// SystemCABundle is backend.SystemCABundle.
const SystemCABundle = backend.SystemCABundle

// provisioned is one file put into the agent before it starts.
type provisioned struct {
	path     string // absolute, in the container
	data     []byte
	mode     int64
	uid, gid int
	dir      bool
	keep     bool // written only when the agent has no such file
}

// provision copies into the created agent, before its command starts, what
// it needs: the bottle's CA (at the plan's ca_file and appended to the
// system store, so clients trust it with no variable), the git user and the
// rules that send SSH remotes to GitHub over HTTPS (through the sidecar),
// and the prompt. It needs no root inside: the engine writes the files,
// owned by the agent's user.
func (l *launch) provision(ctx context.Context) error {
	a := l.Plan.Agent
	facts := readFacts(l.Store, l.agentImageID)
	learned := false
	u, ok := facts.Users[a.User]
	if !ok {
		uid, gid, home, err := l.lookupUser(ctx, a.User)
		if err != nil {
			return err
		}
		u = userFacts{UID: uid, GID: gid, Home: home}
		if facts.Users == nil {
			facts.Users = map[string]userFacts{}
		}
		facts.Users[a.User], learned = u, true
	}
	uid, gid, home := u.UID, u.GID, u.Home
	if a.Home != "" {
		home = a.Home
	}
	if !path.IsAbs(home) || path.Clean(home) == "/" {
		// Provisioning makes the home the agent's own.
		return exit.Usagef("the agent's user %q has the home %q: want a folder of its own", a.User, home)
	}
	caPEM, err := os.ReadFile(filepath.Join(l.Store.EgressDir(l.Plan.Slug), state.CACertFile))
	if err != nil {
		return fmt.Errorf("reading the bottle's CA: %w", unwrapPath(err))
	}
	if !facts.HasCA {
		b, err := l.readFile(ctx, SystemCABundle)
		if err != nil {
			return err
		}
		facts.CABundle, facts.HasCA, learned = b, true, true
	}
	if facts.Shell == nil {
		has, err := l.exists(ctx, "/bin/sh")
		if err != nil {
			return err
		}
		facts.Shell, learned = &has, true
	}
	if learned {
		writeFacts(l.Store, l.agentImageID, facts)
	}
	bundle := backend.AppendCA(facts.CABundle, caPEM)
	files := []provisioned{
		{path: path.Dir(a.CAFile), mode: 0o755, dir: true},
		{path: a.CAFile, data: caPEM, mode: 0o644},
		{path: SystemCABundle, data: bundle, mode: 0o644},
		{path: home, mode: 0o755, uid: uid, gid: gid, dir: true},
		{path: path.Join(home, ".gitconfig"), data: backend.GitConfig(a.GitUser, l.Plan.Egress.Routes), mode: 0o644, uid: uid, gid: gid},
	}
	planned, err := homeFiles(a.Files, a.Prompt, home, uid, gid)
	if err != nil {
		return err
	}
	for _, f := range planned {
		if f.keep && l.Image != "" {
			// The CLI's own state: an agent booted from a snapshot keeps
			// its own. (An image bb built holds none.)
			if b, err := l.readFile(ctx, f.path); err != nil || b != nil {
				continue
			}
		}
		files = append(files, f)
	}
	if l.gitNew {
		seed, err := l.GitSeed()
		if err != nil {
			return err
		}
		root := path.Join(a.Workdir, ".git")
		files = append(files, provisioned{path: root, mode: 0o755, uid: uid, gid: gid, dir: true})
		for _, f := range seed {
			pf := provisioned{path: path.Join(root, f.Path), data: f.Data, mode: int64(f.Mode.Perm()), uid: uid, gid: gid, dir: f.Mode.IsDir()}
			files = append(files, pf)
		}
	}
	tarball, err := tarOf(files)
	if err != nil {
		return err
	}
	_, err = l.api.CopyToContainer(ctx, l.agentID, client.CopyToContainerOptions{
		DestinationPath: "/", Content: bytes.NewReader(tarball)})
	if err != nil {
		return exit.Backend(fmt.Errorf("copying files into %s: %w", l.d.AgentContainer, err))
	}
	return nil
}

// homeFiles are backend.HomeFiles, owned by uid:gid.
func homeFiles(list []plan.File, prompt, home string, uid, gid int) ([]provisioned, error) {
	hs, err := backend.HomeFiles(list, prompt, home)
	if err != nil {
		return nil, err
	}
	out := make([]provisioned, len(hs))
	for i, h := range hs {
		out[i] = provisioned{path: h.Path, data: h.Data, mode: int64(h.Mode), uid: uid, gid: gid, dir: h.Dir, keep: h.Keep}
	}
	return out, nil
}

// exists says whether the created agent has path (a link counts).
func (l *launch) exists(ctx context.Context, p string) (bool, error) {
	res, err := l.api.CopyFromContainer(ctx, l.agentID, client.CopyFromContainerOptions{SourcePath: p})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, exit.Backend(fmt.Errorf("looking for %s in %s: %w", p, l.d.AgentContainer, err))
	}
	res.Content.Close()
	return true, nil
}

// readFile reads one file of the created agent; a missing one is empty.
func (l *launch) readFile(ctx context.Context, p string) ([]byte, error) {
	res, err := l.api.CopyFromContainer(ctx, l.agentID, client.CopyFromContainerOptions{SourcePath: p})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("reading %s from %s: %w", p, l.d.AgentContainer, err))
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, exit.Backend(fmt.Errorf("reading %s from %s: %w", p, l.d.AgentContainer, err))
		}
		if hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(io.LimitReader(tr, 64<<20))
			if err != nil {
				return nil, exit.Backend(fmt.Errorf("reading %s from %s: %w", p, l.d.AgentContainer, err))
			}
			return b, nil
		}
	}
}

// lookupUser finds user in the image's /etc/passwd (backend.LookupUser).
func (l *launch) lookupUser(ctx context.Context, user string) (uid, gid int, home string, err error) {
	passwd, err := l.readFile(ctx, "/etc/passwd")
	if err != nil {
		return 0, 0, "", err
	}
	return backend.LookupUser(passwd, user)
}

// tarOf writes files as a tar to extract at /, each owned as it says.
func tarOf(files []provisioned) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: strings.TrimPrefix(f.path, "/"), Mode: f.mode, Uid: f.uid, Gid: f.gid,
			ModTime: time.Now(), Typeflag: tar.TypeReg, Size: int64(len(f.data)), Format: tar.FormatPAX}
		if f.dir {
			hdr.Typeflag, hdr.Size, hdr.Name = tar.TypeDir, 0, hdr.Name+"/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("packing %s: %w", f.path, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("packing %s: %w", f.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("packing the agent's files: %w", err)
	}
	return buf.Bytes(), nil
}
