package routes

import (
	"fmt"
	"regexp"
	"strings"
)

// Git puts a route's host behind the sidecar's git gate: only the smart-HTTP
// endpoints of the listed repositories are reachable there (clone, fetch,
// and push where Push allows it), every pushed object is scanned before any
// byte of the pack goes upstream, and refs are only created or
// fast-forwarded, never deleted or rewritten.
type Git struct {
	// Repos are the repositories' paths on the host, "owner/name" (GitLab's
	// nested groups too: "group/sub/name"), with or without ".git". Any
	// other repository on the host is refused. Matched exactly, case
	// included: a server that tells "Acme" from "acme" gets no way around.
	Repos []string `yaml:"repos" json:"repos"`
	// Push lists the refs the agent may create or fast-forward, as globs
	// where * matches any run of characters, "/" included (as in git's
	// refspecs): "refs/heads/agent/*". Absent or empty: read-only. A tag
	// (refs/tags/...) is pushed only when a glob starting with refs/tags/
	// names it, and never moved once it exists.
	Push []string `yaml:"push,omitempty" json:"push,omitempty"`
}

var repoSegmentRE = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*$`)

// NormalizeRepo returns a repository path without its ".git" suffix.
func NormalizeRepo(repo string) string { return strings.TrimSuffix(repo, ".git") }

// validateGit checks a route's git field; field names are below "git".
func (r *Route) validateGit() error {
	g := r.Git
	if strings.HasPrefix(r.Host, "*.") {
		return &FieldError{"git", "a wildcard route cannot be a git route: name the host exactly"}
	}
	if len(g.Repos) == 0 {
		return &FieldError{"git.repos", "is required: list the repositories the agent may reach, like owner/name"}
	}
	for i, repo := range g.Repos {
		if err := checkRepo(repo); err != nil {
			return &FieldError{fmt.Sprintf("git.repos[%d]", i), fmt.Sprintf("%q %s", repo, err)}
		}
	}
	for i, p := range g.Push {
		if err := checkPushGlob(p); err != nil {
			return &FieldError{fmt.Sprintf("git.push[%d]", i), fmt.Sprintf("%q %s", p, err)}
		}
	}
	return nil
}

type msgError string

func (e msgError) Error() string { return string(e) }

func checkRepo(repo string) error {
	n := NormalizeRepo(repo)
	if len(repo) > 512 {
		return msgError("is too long (512 characters at most)")
	}
	segs := strings.Split(n, "/")
	if len(segs) < 2 {
		return msgError("is not a repository path like owner/name (no leading or trailing /)")
	}
	for _, s := range segs {
		switch {
		case s == "":
			return msgError("is not a repository path like owner/name (no leading, trailing or double /)")
		case s == "." || s == "..":
			return msgError("has a . or .. segment")
		case !repoSegmentRE.MatchString(s):
			return msgError("may hold only letters, digits, '.', '_' and '-' between its slashes, and no segment may start with '-'")
		case strings.HasSuffix(s, ".git") && s != segs[len(segs)-1]:
			return msgError("has .git before its last segment")
		}
	}
	return nil
}

func checkPushGlob(p string) error {
	if !strings.HasPrefix(p, "refs/") {
		return msgError("must start with refs/, like refs/heads/agent/*")
	}
	if p == "refs/" || strings.HasSuffix(p, "/") {
		return msgError("must not end with /: write refs/heads/agent/* for every branch under agent/")
	}
	// The glob must be a valid ref name once its stars are letters.
	if !ValidRefName(strings.ReplaceAll(p, "*", "x")) {
		return msgError("is not a valid ref name pattern (see git check-ref-format)")
	}
	return nil
}

// ValidRefName reports whether name is a ref name git accepts for an update
// (git check-ref-format, without --allow-onelevel): under refs/, no
// component starting with "." or ending with ".lock", no "..", "@{", "//",
// control characters, space, ~ ^ : ? * [ or \, not ending with "/" or ".",
// and not "@".
func ValidRefName(name string) bool {
	if !strings.HasPrefix(name, "refs/") || len(name) > 1024 || name == "@" {
		return false
	}
	if strings.Contains(name, "..") || strings.Contains(name, "@{") || strings.Contains(name, "//") ||
		strings.HasSuffix(name, "/") || strings.HasSuffix(name, ".") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 0x20 || c == 0x7f || c == ' ' || strings.IndexByte("~^:?*[\\", c) >= 0 {
			return false
		}
	}
	for _, comp := range strings.Split(name, "/") {
		if comp == "" || strings.HasPrefix(comp, ".") || strings.HasSuffix(comp, ".lock") {
			return false
		}
	}
	return true
}

// HasRepo reports whether repo (already without ".git") is one of the
// route's repositories.
func (g *Git) HasRepo(repo string) bool {
	for _, r := range g.Repos {
		if NormalizeRepo(r) == repo {
			return true
		}
	}
	return false
}

// ReadOnly reports whether the route allows no push at all.
func (g *Git) ReadOnly() bool { return len(g.Push) == 0 }

// PushAllowed returns the glob of Push that lets the agent update ref, or
// "" when none does. A tag is only allowed by a glob that starts with
// refs/tags/: refs/* alone never lets a tag out.
func (g *Git) PushAllowed(ref string) string {
	tag := strings.HasPrefix(ref, "refs/tags/")
	for _, p := range g.Push {
		if tag && !strings.HasPrefix(p, "refs/tags/") {
			continue
		}
		if globMatch(p, ref) {
			return p
		}
	}
	return ""
}

// globMatch matches s against a pattern where * is any run of characters
// (slashes too) and every other character is itself.
func globMatch(pat, s string) bool {
	// The classic greedy algorithm with one backtrack point: linear in
	// practice, and never exponential, whatever the stars.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pat) && pat[p] == '*':
			star, mark = p, i
			p++
		case p < len(pat) && pat[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pat) && pat[p] == '*' {
		p++
	}
	return p == len(pat)
}

// IsGitPath reports whether the decoded request path p looks like git's,
// in any case: a smart-HTTP endpoint (info/refs, git-upload-pack,
// git-receive-pack), a dumb-HTTP file (objects/, refs/, HEAD: also what a
// WebDAV push writes) or git LFS (info/lfs), or anything under or ending
// in ".git". On a host with a git
// route, such a path is always the gate's to judge, whatever other routes
// of the host allow: the gate then lets through only the exact smart-HTTP
// endpoints of the listed repositories.
func IsGitPath(p string) bool {
	l := strings.ToLower(p)
	for _, s := range []string{"/info/refs", "git-upload-pack", "git-receive-pack", ".git/", "/objects/", "/refs/", "/info/lfs"} {
		if strings.Contains(l, s) {
			return true
		}
	}
	return strings.HasSuffix(l, ".git") || strings.HasSuffix(l, "/head")
}

// CheckGitHosts refuses two git routes for one host: which repositories
// and refs the host allows must be in one place. It returns a *FieldError
// whose Field is "[i].git".
func CheckGitHosts(rs []Route) error {
	seen := map[string]int{}
	for i := range rs {
		if rs[i].Git == nil {
			continue
		}
		if j, ok := seen[rs[i].Host]; ok {
			return &FieldError{Field: fmt.Sprintf("[%d].git", i),
				Msg: fmt.Sprintf("host %s already has a git route ([%d]): list all its repositories in one", rs[i].Host, j)}
		}
		seen[rs[i].Host] = i
	}
	return nil
}
