package backend

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/provider"
	"github.com/bb-bottles/bb/lib/routes"
)

// What every backend provisions in the agent before its command starts:
// the bottle's CA (at the plan's ca_file and, with AppendCA, in the system
// store, so clients trust it with no variable), GitConfig, and HomeFiles
// (the plan's files and the prompt), owned by the agent's user as
// LookupUser finds it in the image.

// SystemCABundle is where Debian-like images keep the CAs that curl, git
// and OpenSSL trust with no variable set.
const SystemCABundle = "/etc/ssl/certs/ca-certificates.crt"

// PromptFile is where the agent finds its prompt, under its home.
const PromptFile = ".bb/prompt.md"

// AppendCA is bundle with caPEM appended, unless it has it already (a
// resumed image has: appended once, not at every boot).
func AppendCA(bundle, caPEM []byte) []byte {
	if bytes.Contains(bundle, bytes.TrimSpace(caPEM)) {
		return bundle
	}
	out := bytes.Clone(bundle)
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\n")) {
		out = append(out, '\n')
	}
	return append(out, caPEM...)
}

// HomeFile is one file (or folder) provisioned in the agent's home, owned
// by its user.
type HomeFile struct {
	Path string // absolute, in the guest
	Data []byte
	Mode os.FileMode
	Dir  bool
	// Keep: written only when the agent has no such file (a CLI's own
	// state, which a resumed agent keeps).
	Keep bool
}

// HomeFiles are the plan's files (and the prompt, for a plan that does not
// list it), with the folders they need below home, parents first. They
// must be in its home: a file written as the agent's own anywhere else
// would hand it a part of the system.
func HomeFiles(list []plan.File, prompt, home string) ([]HomeFile, error) {
	var out []HomeFile
	dirs := map[string]bool{home: true}
	hasPrompt := false
	add := func(p string, data []byte, mode os.FileMode, keep bool) error {
		if !path.IsAbs(p) || path.Clean(p) != p || !strings.HasPrefix(p, home+"/") {
			return exit.Usagef("plan agent.files: %s is not a clean path in the agent's home %s", p, home)
		}
		var parents []string
		for d := path.Dir(p); !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			out = append(out, HomeFile{Path: parents[i], Mode: 0o755, Dir: true})
		}
		out = append(out, HomeFile{Path: p, Data: data, Mode: mode, Keep: keep})
		return nil
	}
	for _, f := range list {
		mode, err := f.FileMode()
		if err != nil {
			return nil, exit.Usage(fmt.Errorf("plan agent.files: %w", err))
		}
		if err := add(f.Path, []byte(f.Content), mode.Perm(), f.Keep); err != nil {
			return nil, err
		}
		hasPrompt = hasPrompt || f.Path == path.Join(home, PromptFile)
	}
	if prompt != "" && !hasPrompt {
		if err := add(path.Join(home, PromptFile), []byte(prompt), 0o644, false); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// LookupUser finds user (a name or a numeric uid, either optionally with
// :group) in an image's /etc/passwd: its uid, gid and home. Not found, or
// root, is bad input.
func LookupUser(passwd []byte, user string) (uid, gid int, home string, err error) {
	name, group, hasGroup := strings.Cut(user, ":")
	uid, gid, home, found := parsePasswd(passwd, name)
	if !found {
		// Not even a numeric one: its home would be a guess ("/"), and
		// provisioning gives the home to the agent.
		return 0, 0, "", exit.Usage(fmt.Errorf("the agent's user %q is not in the image's /etc/passwd", user),
			"add the user to the image (useradd in its Dockerfile), or plan a user it has")
	}
	if hasGroup {
		if gid, err = strconv.Atoi(group); err != nil {
			return 0, 0, "", exit.Usagef("the agent's user %q: want a numeric group", user)
		}
	}
	if uid == 0 {
		return 0, 0, "", exit.Usagef("the agent's user %q is root in the image", user)
	}
	return uid, gid, home, nil
}

func parsePasswd(passwd []byte, name string) (uid, gid int, home string, found bool) {
	sc := bufio.NewScanner(bytes.NewReader(passwd))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 7 || (f[0] != name && f[2] != name) {
			continue
		}
		u, err1 := strconv.Atoi(f[2])
		g, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			continue
		}
		return u, g, f[5], true
	}
	return 0, 0, "", false
}

// GitConfig is the agent's ~/.gitconfig (provider.GitConfig): who it
// commits as, and the SSH remotes of GitHub and of the git routes
// rewritten to HTTPS, the sidecar's way.
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
