package workspace

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// The person's .git is lent to the agent read-only, whole (its objects,
// refs and the "host" remote need it), configuration included: a token in
// a remote's URL or an Authorization header there would be the agent's to
// read, and to send through any route it has. Such a repository is not
// mounted.

// secretKeys are parts of a setting's name that say its value is a secret.
var secretKeys = []string{"token", "passw", "secret", "oauth", "apikey", "api-key", "authorization", "extraheader", "smtppass"}

// secretValues are parts of a value that say it holds a secret: an inline
// credential helper's output, a header, a forge's token.
var secretValues = []string{"password=", "passwd=", "token=", "authorization:", "bearer ",
	"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-"}

// ConfigCredentials names the settings of a git configuration that hold a
// credential: a URL with a password (or any user, for HTTP, where a token
// is the user) in its value or subsection, or a name that says secret. The
// names never show a value or a subsection that may hold one.
func ConfigCredentials(text []byte) []string {
	found := map[string]bool{}
	for _, e := range parseConfig(text) {
		name := e.section + "." + e.key
		if e.sub != "" {
			name = e.section + ".<" + e.section + ">." + e.key
		}
		secret := urlCredential(e.value) || urlCredential(e.sub)
		for _, k := range secretKeys {
			secret = secret || strings.Contains(e.key, k)
		}
		for _, v := range secretValues {
			secret = secret || strings.Contains(strings.ToLower(e.value), v)
		}
		if secret {
			found[name] = true
		}
	}
	// What the parser above may read otherwise than git does (an odd
	// quote, a continuation) is looked at line by line too.
	if len(found) == 0 {
		for i, line := range strings.Split(string(text), "\n") {
			l := strings.ToLower(strings.TrimSpace(line))
			if l == "" || l[0] == '#' || l[0] == ';' {
				continue
			}
			key, value, _ := strings.Cut(l, "=")
			secret := urlCredential(line)
			for _, k := range secretKeys {
				secret = secret || strings.Contains(key, k)
			}
			for _, v := range secretValues {
				secret = secret || strings.Contains(value, v)
			}
			if secret {
				found[fmt.Sprintf("line %d", i+1)] = true
			}
		}
	}
	var out []string
	for n := range found {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// urlCredential reports whether s holds a URL whose user part carries a
// secret.
func urlCredential(s string) bool {
	for s != "" {
		i := strings.Index(s, "://")
		if i < 0 {
			return false
		}
		scheme := strings.ToLower(s[max(0, strings.LastIndexAny(s[:i], " \t\"'=<>,;")+1):i])
		rest := s[i+3:]
		authority := rest
		if j := strings.IndexAny(rest, "/?# \t\"'"); j >= 0 {
			authority = rest[:j]
		}
		if at := strings.LastIndex(authority, "@"); at >= 0 {
			user := authority[:at]
			if strings.Contains(user, ":") || strings.HasPrefix(scheme, "http") || strings.HasPrefix(scheme, "ftp") {
				return true
			}
		}
		s = rest
	}
	return false
}

// maxConfigScan bounds the entries of modules/ looked through for
// configuration files.
const maxConfigScan = 10_000

// repoCredentials names the settings holding a credential in the
// configuration files of the repository at root: config, config.worktree,
// and those of its submodules and worktrees.
func repoCredentials(fsys fs.FS) []string {
	var out []string
	check := func(p string) {
		fi, err := fs.Stat(fsys, p)
		if err != nil || !fi.Mode().IsRegular() {
			return
		}
		f, err := fsys.Open(p)
		if err != nil {
			return
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxSeedFile))
		if err != nil {
			return
		}
		for _, n := range ConfigCredentials(b) {
			out = append(out, n+" in "+path.Join(".git", p))
		}
	}
	check("config")
	check("config.worktree")
	for _, dir := range []string{"modules", "worktrees"} {
		n := 0
		fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if n++; n > maxConfigScan {
				return fs.SkipAll
			}
			switch {
			case d.IsDir() && (d.Name() == "objects" || d.Name() == "refs" || d.Name() == "logs"):
				return fs.SkipDir
			case d.Type().IsRegular() && (d.Name() == "config" || d.Name() == "config.worktree"):
				check(p)
			}
			return nil
		})
	}
	return out
}
