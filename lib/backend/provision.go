package backend

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
)

// SystemCABundle is where Debian-like images keep the CAs that curl, git
// and OpenSSL trust with no variable set: every backend adds the bottle's
// CA there.
const SystemCABundle = "/etc/ssl/certs/ca-certificates.crt"

// GitConfig is the agent's ~/.gitconfig: who it commits as, and GitHub's
// SSH remotes rewritten to HTTPS, the only way out the sidecar offers (and
// where it injects the git token).
func GitConfig(u *manifest.GitUser) []byte {
	var b strings.Builder
	b.WriteString("# Written by bb-launch.\n")
	if u != nil {
		fmt.Fprintf(&b, "[user]\n\tname = %s\n\temail = %s\n", gitQuote(u.Name), gitQuote(u.Email))
	}
	b.WriteString("[url \"https://github.com/\"]\n\tinsteadOf = git@github.com:\n\tinsteadOf = ssh://git@github.com/\n")
	// The workspace belongs to the person's uid, not the agent's: git
	// would refuse it as of "dubious ownership". Everything in the bottle
	// is the agent's to work in; the person's .git is not in it.
	b.WriteString("[safe]\n\tdirectory = *\n")
	return []byte(b.String())
}

// gitQuote quotes a git config value: inside double quotes only " and \
// are special, and a line break cannot be written at all.
func gitQuote(s string) string {
	s = strings.NewReplacer("\\", "\\\\", "\"", "\\\"", "\n", " ", "\r", " ", "\x00", "").Replace(s)
	return "\"" + s + "\""
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
