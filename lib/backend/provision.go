package backend

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/provider"
	"github.com/bb-bottles/bb/lib/routes"
)

// SystemCABundle is where Debian-like images keep the CAs that curl, git
// and OpenSSL trust with no variable set: every backend adds the bottle's
// CA there.
const SystemCABundle = "/etc/ssl/certs/ca-certificates.crt"

// GitConfig is the agent's ~/.gitconfig on every backend: who it commits
// as, and SSH remotes of GitHub and of every git route's host rewritten to
// HTTPS, the only way out the sidecar offers (provider.GitConfig).
func GitConfig(u *manifest.GitUser, rs []routes.Route) []byte {
	if u == nil {
		return provider.GitConfig("", "", rs)
	}
	return provider.GitConfig(u.Name, u.Email, rs)
}

// SidecarUser is the uid and gid the sidecar runs as when bb-launch runs
// as root (the "nonroot" of distroless images): never root, which an
// engine's root would be on the host's files.
const SidecarUser = 65532

// ChownTree gives dir and everything in it to uid:gid (the egress folder,
// to SidecarUser).
func ChownTree(dir string, uid, gid int) error {
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return exit.Backend(fmt.Errorf("giving the egress folder to the sidecar's user: %w", err))
	}
	return nil
}
