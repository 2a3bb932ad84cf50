package smolvm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/bb-bottles/bb/lib/exit"
)

// gitDir is the bottle's own git repository on the host: smolvm has no
// volumes, so it is a folder of the bottle's state, mounted over the
// workspace's .git, and goes with the state (stop --rm).
func (l *launch) gitDir() string {
	return filepath.Join(l.Store.BottleDir(l.Plan.Slug), StateDir, "git")
}

// gitRepo makes the bottle's own git repository when it has none yet (a
// resumed bottle keeps its repository: the agent's commits), seeded from
// the person's, and the workspace's .git for it to be mounted on, where
// there is none.
func (l *launch) gitRepo(context.Context) error {
	if !l.Git.OwnRepo {
		return nil
	}
	dir := l.gitDir()
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	seed, err := l.GitSeed()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return exit.Backend(fmt.Errorf("making the bottle's git repository: %w", err))
	}
	l.gitNew = true
	for _, f := range seed {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if f.Mode.IsDir() {
			err = os.MkdirAll(p, f.Mode.Perm()|0o700)
		} else if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			err = os.WriteFile(p, f.Data, f.Mode.Perm())
		}
		if err != nil {
			return exit.Backend(fmt.Errorf("seeding the bottle's git repository: %w", err))
		}
	}
	made, err := l.MakeGitMountpoint()
	if err != nil {
		return err
	}
	l.MadeGitDir = l.MadeGitDir || made
	return nil
}

// agentMounts are the agent's --volume flags: the workspace at its workdir,
// and what the launch's git plan mounts (backend.Launching.GitMounts): the
// bottle's own repository (its folder) over <workdir>/.git, and the
// person's .git read-only. smolvm mounts folders only, so a workspace whose
// .git is a file (a linked worktree's), which must be kept read-only from
// the agent, is refused.
func (l *launch) agentMounts() ([]string, error) {
	args, err := volume(l.Workspace, l.Plan.Agent.Workdir, false)
	if err != nil {
		return nil, err
	}
	for _, m := range l.GitMounts() {
		src := m.Source
		if m.Volume {
			src = l.gitDir()
		}
		if fi, err := os.Stat(src); err == nil && !fi.IsDir() {
			return nil, exit.Usage(fmt.Errorf("the workspace's .git is a file (a linked worktree's or a submodule's), "+
				"which smolvm cannot mount read-only: it mounts folders only, and the agent could point it elsewhere"),
				"launch the bottle on the repository's main checkout, or on the docker backend")
		} else if errors.Is(err, fs.ErrNotExist) {
			return nil, exit.Backend(fmt.Errorf("mounting %s: %w", src, err))
		}
		v, err := volume(src, m.Target, m.ReadOnly)
		if err != nil {
			return nil, err
		}
		args = append(args, v...)
	}
	return args, nil
}
