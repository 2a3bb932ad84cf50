package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/workspace"
)

// FetchedRefs is where the agent's branches land in the person's
// repository: refs/remotes/bb/<slug>/<branch>, shown as bb/<slug>/<branch>.
func FetchedRefs(slug string) string { return "refs/remotes/bb/" + slug + "/" }

// ErrNoAgentRepo is a bottle without a repository of its own.
var ErrNoAgentRepo = errors.New("the bottle has no git repository of its own")

// FetchGit brings the branches of bottle slug's own repository into the
// person's repository, the bottle's workspace, under FetchedRefs(slug),
// and returns the refs it holds there now. The agent's repository never
// reaches git on the host as a repository: it comes as a bundle, made in
// the backend's sandbox, whose objects the host's git checks as it fetches
// (transfer.fsckObjects), with no hook or monitor of the person's run. The
// person's own branches are not touched. bundle, when set, gets the
// bundle instead (for a workspace that is no repository).
func FetchGit(ctx context.Context, b Backend, st *state.Store, p *plan.Plan, bundle string) ([]string, error) {
	ex, ok := b.(GitExporter)
	if !ok {
		return nil, Unsupported(b.Name(), "hand out a bottle's git repository", "")
	}
	slug := p.Slug
	ld, err := ReadLaunched(st, slug)
	if err != nil {
		return nil, exit.Usage(err)
	}
	if ld.Workspace == "" {
		return nil, exit.Usage(ErrNoAgentRepo)
	}
	if err := workspace.Same(ld.Workspace, ld.WorkspaceID); err != nil {
		return nil, exit.Usage(err)
	}
	g, err := workspace.InspectGit(ld.Workspace)
	if err != nil {
		return nil, exit.Usage(err)
	}
	o := GitExport{Slug: slug, Image: ld.AgentImage, User: p.Agent.User}
	if g.Kind == workspace.GitDir {
		o.HostGit = g.Dir
		if o.Exclude, err = hostTips(ctx, ld.Workspace); err != nil {
			return nil, err
		}
	} else if bundle == "" {
		return nil, exit.Usage(fmt.Errorf("the workspace %s is no git repository to fetch into", ld.Workspace),
			fmt.Sprintf("'bb-launch fetch %s --bundle FILE' writes the agent's branches to FILE; 'git clone FILE' makes a repository of them", slug))
	}
	// Somewhere the person's git can read it (see hostGit), and no one else.
	dir, err := os.MkdirTemp("", "bb-fetch-")
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("making a folder for the agent's bundle: %w", err))
	}
	defer os.RemoveAll(dir)
	if uid, gid, ok := foreignOwner(ld.Workspace); ok {
		os.Chown(dir, uid, gid)
	}
	tmp, err := os.Create(filepath.Join(dir, "agent.bundle"))
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("making a file for the agent's bundle: %w", err))
	}
	err = ex.ExportGit(ctx, o, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(tmp.Name()); err != nil || fi.Size() == 0 {
		return nil, nil // nothing the person's repository does not have
	}
	if bundle != "" {
		if err := os.Rename(tmp.Name(), bundle); err != nil {
			data, rerr := os.ReadFile(tmp.Name())
			if rerr == nil {
				err = os.WriteFile(bundle, data, 0o644)
			}
			if err != nil {
				return nil, exit.Backend(fmt.Errorf("writing %s: %w", bundle, err))
			}
		}
		return nil, nil
	}
	if _, err := hostGit(ctx, ld.Workspace, "fetch", "--no-write-fetch-head", "--no-recurse-submodules", "--no-auto-gc",
		"--quiet", tmp.Name(), "+refs/heads/*:"+FetchedRefs(slug)+"*"); err != nil {
		return nil, err
	}
	out, err := hostGit(ctx, ld.Workspace, "for-each-ref", "--format=%(refname)", FetchedRefs(slug))
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// hostTips are the commits the person's branches and tags point at.
func hostTips(ctx context.Context, ws string) ([]string, error) {
	out, err := hostGit(ctx, ws, "for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags", "refs/remotes")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var tips []string
	for _, id := range strings.Fields(out) {
		if !seen[id] && len(tips) < 4096 {
			seen[id] = true
			tips = append(tips, id)
		}
	}
	return tips, nil
}

// hostGit runs git on the person's repository at ws, as they would, but
// with no hook, monitor or pager of any configuration run, nothing asked
// on a terminal, and every object it receives checked.
func hostGit(ctx context.Context, ws string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", ws, "-c", "core.hooksPath=" + os.DevNull,
		"-c", "core.fsmonitor=false", "-c", "transfer.fsckObjects=true", "-c", "core.pager=cat"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0")
	if uid, gid, ok := foreignOwner(ws); ok {
		// bb runs as root on another's checkout (sudo): git refuses a
		// repository whose owner is not its user, and rightly. So it runs
		// as the owner, with no configuration of root's (which it may not
		// read) and none of the owner's home either.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Env = append(cmd.Env, "HOME="+os.DevNull, "XDG_CONFIG_HOME="+os.DevNull, "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1")
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", exit.Backend(errors.New("git is not installed on this machine"))
		}
		return "", exit.Backend(fmt.Errorf("git %s in %s: %w: %s", args[0], ws, err, strings.TrimSpace(errb.String())))
	}
	return out.String(), nil
}
