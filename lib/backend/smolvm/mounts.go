package smolvm

import (
	"fmt"
	"io"
	"os"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
)

// agentMounts are the agent's -v flags: the workspace at workdir, and its
// git folders as backend.GitMounts would bind them. smolvm mounts folders
// only, so where GitMounts binds a file (.git/config read-only over a
// writable .git) the whole .git is mounted read-only instead, and the
// person is told: the agent reads history but cannot commit. A .git that is
// itself a file (a linked worktree's) cannot be kept from the agent at
// all, and is refused.
func agentMounts(ws, workdir string, progress io.Writer) ([]string, error) {
	args, err := volume(ws, workdir, false)
	if err != nil {
		return nil, err
	}
	gits, err := backend.GitMounts(ws, workdir)
	if err != nil {
		return nil, err
	}
	allDirs := true
	for _, m := range gits {
		if fi, err := os.Stat(m.Source); err != nil || !fi.IsDir() {
			allDirs = false
		}
	}
	switch {
	case len(gits) == 0:
	case allDirs:
		for _, m := range gits {
			v, err := volume(m.Source, m.Target, m.ReadOnly)
			if err != nil {
				return nil, err
			}
			args = append(args, v...)
		}
	case gits[0].ReadOnly:
		return nil, exit.Usage(fmt.Errorf("the workspace's .git is a file (a linked worktree's or a submodule's), "+
			"which smolvm cannot mount read-only: it mounts folders only, and the agent could point it elsewhere"),
			"launch the bottle on the repository's main checkout, or on the docker backend")
	default:
		v, err := volume(gits[0].Source, gits[0].Target, true)
		if err != nil {
			return nil, err
		}
		args = append(args, v...)
		fmt.Fprintf(progress, "bb-launch: smolvm mounts folders only, so the workspace's .git is read-only to the agent "+
			"(it cannot commit): its .git/config cannot be kept read-only on its own\n")
	}
	return args, nil
}
