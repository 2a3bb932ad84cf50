package workspace

import (
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
	var walk func(dir, rel string) bool
	walk = func(dir, rel string) bool {
		f, err := os.Open(dir)
		if err != nil {
			return true
		}
		defer f.Close()
		for {
			entries, err := f.ReadDir(256)
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
			if err != nil {
				return true
			}
		}
	}
	complete = walk(ws, "")
	return repos, complete
}
