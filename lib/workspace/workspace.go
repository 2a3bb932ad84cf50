// Package workspace holds the rules for the host folders a bottle mounts:
// which folders an agent may get read-write, how a folder recorded at the
// first launch is checked again at every later one, what of a git
// checkout the agent may see and what it may never write, and how its own
// repository is seeded from the person's.
//
// The agent owns what it is given completely, and the host reads it
// later: bb at the next launch or resume, git when the person works in the
// checkout. So every path is resolved and checked each time it is
// mounted, against one set of rules, and nothing the agent can write is a
// file the host takes configuration or code from (see Git).
package workspace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Hint is what a person can do about a folder that is refused.
const Hint = "give the bottle a project folder as its workspace (workspace: in bb.yaml), or run bb-launch from that folder"

// Protected is a host path no mounted folder may hold (be it, or be one of
// its parents), and with Inside, lie within either.
type Protected struct {
	What   string
	Path   string
	Inside bool
}

// Refusal is a folder the rules refuse; the message says which rule.
type Refusal struct {
	Path string
	Why  string
}

func (e *Refusal) Error() string { return "refusing the workspace " + e.Path + ": " + e.Why }

// credentialFolders are folders (and files) under a home that hold keys,
// tokens, sessions or the means to get them: no workspace may be one of
// them, hold one, or lie inside one.
var credentialFolders = []string{
	".ssh", ".gnupg", ".aws", ".azure", ".config", ".kube", ".docker", ".minikube",
	".password-store", ".local/share/keyrings", ".pki", ".mozilla", ".terraform.d",
	".oci", ".claude", ".codex", ".vault-token", ".netrc", ".git-credentials",
	".npmrc", ".pypirc", ".s3cfg", ".boto", ".terraformrc", ".cargo/credentials",
	".cargo/credentials.toml", ".m2/settings.xml", ".gradle/gradle.properties",
	".local/state/bot-bottle", "Library",
}

// systemFolders are the host's own: the agent gets none of them nor
// anything inside. /tmp and /var/tmp hold other programs' sockets (ssh
// and gpg agents, X11) and may not be workspaces themselves, though a
// folder made in them may.
var systemFolders = []Protected{
	{"the host's configuration", "/etc", true},
	{"the kernel's files", "/proc", true},
	{"the kernel's files", "/sys", true},
	{"the host's devices", "/dev", true},
	{"the host's boot files", "/boot", true},
	{"the host's sockets and runtime state", "/run", true},
	{"the host's sockets and runtime state", "/var/run", true},
	{"the engine's own data", "/var/lib/docker", true},
	{"the host's programs", "/usr", false},
	{"the host's programs", "/bin", false},
	{"the host's programs", "/sbin", false},
	{"the host's libraries", "/lib", false},
	{"the host's temporary folder", "/tmp", false},
	{"the host's temporary folder", "/var/tmp", false},
	{"the host's keychains", "/Library/Keychains", true},
	{"the host's system", "/System", true},
}

// DockerSockets are where engines listen on a host; a workspace holding one
// would hand the agent the engine, and the host with it.
var DockerSockets = []string{"/var/run/docker.sock", "/run/docker.sock"}

// Rules are the protected paths of this host, for env (HOME, XDG_*,
// BB_STATE_DIR, DOCKER_HOST, SSH_AUTH_SOCK), besides the system's. stateDir
// is bb's state folder ("" when unknown).
func Rules(env func(string) string, stateDir string) []Protected {
	ps := append([]Protected(nil), systemFolders...)
	home := env("HOME")
	if !filepath.IsAbs(home) || filepath.Clean(home) == "/" {
		home = ""
	}
	if home != "" {
		ps = append(ps, Protected{"your home folder, with your keys, tokens and bb's own state", home, false})
	}
	if stateDir != "" {
		ps = append(ps, Protected{"bb's state folder (the bottles' routes and CA keys)", stateDir, true})
	}
	if cfg := env("XDG_CONFIG_HOME"); filepath.IsAbs(cfg) {
		ps = append(ps, Protected{"your configuration folder (bb's among it)", cfg, true})
	}
	if home != "" {
		for _, c := range credentialFolders {
			ps = append(ps, Protected{"~/" + c + ", which holds credentials", filepath.Join(home, c), true})
		}
	}
	for _, s := range DockerSockets {
		ps = append(ps, Protected{"the Docker socket", s, false})
	}
	if h, ok := strings.CutPrefix(env("DOCKER_HOST"), "unix://"); ok && filepath.IsAbs(h) {
		ps = append(ps, Protected{"the Docker socket", h, false})
	}
	if s := env("SSH_AUTH_SOCK"); filepath.IsAbs(s) {
		// Whoever can reach it signs with your SSH keys.
		ps = append(ps, Protected{"your SSH agent's socket", s, false})
	}
	return ps
}

// Check resolves ws (absolute, links followed) and refuses it when it is
// no folder, the root, or a folder the rules protect: one that holds a
// protected path or, for Inside ones, lies within one. It returns the
// resolved folder, the path to mount.
func Check(ws string, rules []Protected) (string, error) {
	if !filepath.IsAbs(ws) {
		return "", &Refusal{ws, "it is not an absolute path"}
	}
	real := Resolve(ws)
	if real == string(filepath.Separator) {
		return "", &Refusal{ws, "it is the host's root, every file of the host would be the agent's to change"}
	}
	for _, p := range rules {
		pr := Resolve(p.Path)
		if Within(real, pr) {
			if real == pr {
				return "", &Refusal{ws, "it is " + p.What}
			}
			return "", &Refusal{ws, "it holds " + p.What + " (" + pr + ")"}
		}
		if p.Inside && Within(pr, real) {
			return "", &Refusal{ws, "it is inside " + p.What + " (" + pr + ")"}
		}
	}
	return real, nil
}

// CheckDir is Check for a folder that must exist, as a mounted one must.
func CheckDir(ws string, rules []Protected) (string, error) {
	real, err := Check(ws, rules)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(real)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", &Refusal{ws, "it cannot be opened: " + err.Error()}
	}
	if !fi.IsDir() {
		return "", &Refusal{ws, "it is not a folder"}
	}
	return real, nil
}

// Resolve is p absolute, clean and with its symlinks resolved, as far as
// it exists: a missing tail is joined to its resolved parent.
func Resolve(p string) string {
	p, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	var tail []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, tail...)...)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, tail...)...)
		}
		tail = append([]string{filepath.Base(p)}, tail...)
		p = parent
	}
}

// Within reports whether p is dir or under it (both clean and absolute).
// On macOS, whose disks ignore case by default, case is ignored.
func Within(dir, p string) bool {
	if runtime.GOOS == "darwin" {
		dir, p = strings.ToLower(dir), strings.ToLower(p)
	}
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(os.PathSeparator))
}

// ID is a folder's identity on its disk: a folder recorded at the first
// launch must be the same folder at every later one, not another put in
// its place.
type ID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// Same checks that the recorded folder (resolved at the first launch) is
// still where it was: its path resolves to itself, so no part of it was
// replaced by a link, and it is the same folder (id, when recorded).
func Same(recorded string, id ID) error {
	real, err := filepath.EvalSymlinks(recorded)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return &Refusal{recorded, "it cannot be opened: " + err.Error()}
	}
	if real != recorded {
		return &Refusal{recorded, fmt.Sprintf("it now leads to %s: a part of its path was replaced by a link since the first launch", real)}
	}
	if id == (ID{}) {
		return nil
	}
	now, err := IDOf(recorded)
	if err != nil {
		return &Refusal{recorded, err.Error()}
	}
	if now != id {
		return &Refusal{recorded, "it is not the folder of the first launch: another was put in its place"}
	}
	return nil
}

// maxLinks is how many links resolving one path may pass, as the kernel's
// own bound (40) is, so that a loop ends.
const maxLinks = 40

// Links returns where each link met in resolving p (absolute) lies: the
// link itself, its folder resolved. A missing part ends the walk.
func Links(p string) []string {
	var links []string
	rest := strings.Split(filepath.Clean(p), string(filepath.Separator))
	cur := string(filepath.Separator)
	for hops := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return links
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		links = append(links, next)
		to, err := os.Readlink(next)
		if hops++; err != nil || hops > maxLinks {
			return links
		}
		if filepath.IsAbs(to) {
			cur = string(filepath.Separator)
		}
		rest = append(strings.Split(to, string(filepath.Separator)), rest...)
	}
	return links
}

// NotThroughLinksIn refuses p when resolving it passes a link that lies in
// one of dirs (resolved folders an agent can write, or could): the agent
// may have put it there to have a later mount of p lead where it chose.
func NotThroughLinksIn(p string, dirs []string) error {
	for _, l := range Links(p) {
		for _, d := range dirs {
			if d != "" && Within(d, l) {
				return fmt.Errorf("the path %s passes the link %s, which lies in %s, a folder an agent can write or could: "+
					"bb takes no path an agent may have steered; name the folder the link leads to, if it is the one you mean", p, l, d)
			}
		}
	}
	return nil
}
