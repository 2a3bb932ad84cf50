package workspace

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// NestedRepos lists the folders under ws (not ws itself) that hold a .git
// entry of any kind: repositories inside the workspace, which the agent
// could write completely, configuration and hooks included, so that git
// on the host runs what the agent wrote when the person works in them (or
// adds one to the workspace's repository, which makes git status look into
// it). It looks at no more than budget entries, links not followed, and
// reports whether it saw them all.
func NestedRepos(ws string, budget int) (repos []string, complete bool) {
	seen := 0
	complete = true
	var walk func(dir, rel string) bool
	walk = func(dir, rel string) bool {
		// A folder that cannot be read (no permission, a path past the
		// system's length) may hold one: the look is incomplete. One gone
		// since it was listed holds none.
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			complete = false
		}
		for _, e := range entries {
			if seen++; seen > budget {
				return false
			}
			name := e.Name()
			if name == ".git" {
				if rel != "" {
					repos = append(repos, rel)
				}
				continue
			}
			if e.IsDir() {
				if !walk(filepath.Join(dir, name), filepath.Join(rel, name)) {
					return false
				}
			}
		}
		return true
	}
	if !walk(ws, "") {
		complete = false
	}
	return repos, complete
}
