package workspace

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// The person's repository is never the agent's to write. Git on the host
// takes code to run from what its repository holds: hooks, and commands
// named in its configuration (core.fsmonitor, core.hooksPath, filter,
// diff and merge drivers, core.sshCommand, credential helpers, includes),
// and it finds that configuration through files in .git that redirect it
// (commondir, config.worktree, a .git file's gitdir:, worktrees/,
// modules/ for submodules, whose own configuration and hooks it runs when
// it looks into them) and through the index (a gitlink makes git status
// recurse into a nested repository of the agent's making). Guarding these
// one by one leaves the next one open; so the agent never writes the
// person's .git at all. In the bottle, /workspace/.git is the agent's own
// repository (a folder of the bottle's, masking the person's), seeded
// from the person's: its HEAD, refs and index, and a configuration of the
// few keys that say what the repository is and where its remotes are; its
// objects are the person's, read-only, through git's alternates. The
// agent commits there; its branches come back only as data (a bundle
// that git on the host verifies), never as configuration.

// GitKind is what a workspace's .git is.
type GitKind int

// What a workspace's .git can be.
const (
	GitNone GitKind = iota // no .git: the agent may make a repository of its own
	GitDir                 // a repository: shared read-only, seeded into the agent's
	GitFile                // a .git file (a linked worktree, a submodule's checkout)
)

// Git is what bb found at <workspace>/.git.
type Git struct {
	Kind GitKind
	// Dir is the person's repository (Kind GitDir): <workspace>/.git,
	// itself no link.
	Dir string
}

// HostGitMount is where the person's .git is mounted, read-only, in the
// bottle; the agent's repository borrows its objects from there.
const HostGitMount = "/bb/git/host"

// InspectGit looks at ws/.git without following a link. A link is
// refused: whatever it leads to, bb would mount it, and a link is what an
// agent leaves to steer a mount.
func InspectGit(ws string) (Git, error) {
	p := filepath.Join(ws, ".git")
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Git{Kind: GitNone}, nil
	case err != nil:
		return Git{}, fmt.Errorf("reading %s: %w", p, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		to, _ := os.Readlink(p)
		return Git{}, &Refusal{ws, fmt.Sprintf("its .git is a symbolic link (to %s): bb mounts no link; if you made it, put the repository itself there", to)}
	case fi.Mode().IsRegular():
		return Git{Kind: GitFile}, nil
	case fi.IsDir():
		// An empty .git (a mountpoint bb made, say) is no repository: git
		// passes over it, and so does bb.
		if hf, err := os.Lstat(filepath.Join(p, "HEAD")); err != nil || !hf.Mode().IsRegular() {
			return Git{Kind: GitNone}, nil
		}
		return Git{Kind: GitDir, Dir: p}, nil
	}
	return Git{}, &Refusal{ws, "its .git is neither a folder nor a file"}
}

// File is one entry of a seeded repository, relative to its git folder.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode // fs.ModeDir for a folder
}

// Limits on what seeding copies: a repository's refs and index are small,
// an outsized one is left out (the agent's git rebuilds an index) rather
// than held in memory.
const (
	maxSeedFile  = 256 << 20
	maxSeedTotal = 512 << 20
	maxRefFiles  = 100_000
	maxModules   = 4 // depth of submodules within submodules
)

// maxSeedEntries bounds the files and folders of a seed, over the whole
// repository and its submodules (a variable for tests): each is held in
// memory and written to the bottle.
var maxSeedEntries = 200_000

// Seed returns the files of the agent's own repository, made from the
// person's repository g.Dir (read through an os.Root: no link in it leads
// out), and notes for the person on what the agent's copy lacks. hostMount
// is where g.Dir is mounted in the bottle.
func Seed(g Git, hostMount string) ([]File, []string, error) {
	if g.Kind != GitDir {
		return nil, nil, nil
	}
	root, err := os.OpenRoot(g.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the repository %s: %w", g.Dir, err)
	}
	defer root.Close()
	s := &seeder{root: root}
	if err := s.repo("", hostMount, false, 0); err != nil {
		return nil, nil, err
	}
	sort.Slice(s.files, func(i, j int) bool { return s.files[i].Path < s.files[j].Path })
	return s.files, s.notes, nil
}

type seeder struct {
	root  *os.Root
	files []File
	notes []string
	total int64
	full  bool // maxSeedEntries reached: nothing more is added
}

// add adds f to the seed, unless it is full.
func (s *seeder) add(f File) bool {
	if s.full {
		return false
	}
	if len(s.files) >= maxSeedEntries {
		s.full = true
		s.note("your repository holds more than %d files of refs and submodules: the rest are left out of the agent's copy", maxSeedEntries)
		return false
	}
	s.files = append(s.files, f)
	return true
}

func (s *seeder) note(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

func (s *seeder) dir(p string) { s.add(File{Path: p, Mode: fs.ModeDir | 0o755}) }

// read copies the regular file rel (under the repository's root) to the
// seed, if it is there and within the limits; it reports whether it was.
func (s *seeder) read(rel string) ([]byte, bool) {
	fi, err := s.root.Lstat(rel)
	if err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	if fi.Size() > maxSeedFile || s.total+fi.Size() > maxSeedTotal {
		s.note("%s is too large to copy (%d bytes); the agent's repository has none", rel, fi.Size())
		return nil, false
	}
	f, err := s.root.Open(rel)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSeedFile+1))
	if err != nil || int64(len(b)) > maxSeedFile {
		return nil, false
	}
	s.total += int64(len(b))
	return b, true
}

func (s *seeder) copy(rel, to string) bool {
	if s.full {
		return false
	}
	b, ok := s.read(rel)
	return ok && s.add(File{Path: to, Data: b, Mode: 0o644})
}

// repo seeds the repository at rel (the main one, "", or a submodule's
// under modules/) into the same place of the agent's, borrowing objects
// from mount/rel/objects.
func (s *seeder) repo(rel, mount string, module bool, depth int) error {
	at := func(p string) string { return path.Join(rel, p) }
	if rel != "" {
		s.dir(rel)
	}
	if !s.copy(at("HEAD"), at("HEAD")) {
		if rel == "" {
			return errors.New("the repository has no HEAD")
		}
		s.note("%s has no HEAD: left out", rel)
		return nil
	}
	cfg, _ := s.read(at("config"))
	host := ""
	if rel == "" {
		host = mount
	}
	kept, dropped := FilterConfig(cfg, module, host)
	s.add(File{Path: at("config"), Data: kept, Mode: 0o644})
	if len(dropped) > 0 && rel == "" {
		s.note("the agent's repository keeps none of your repository's settings but its remotes and format (left out: %s)", strings.Join(dropped, ", "))
	}
	for _, d := range []string{"objects", "objects/info", "objects/pack", "refs", "refs/heads", "refs/tags", "info"} {
		s.dir(at(d))
	}
	alternates := path.Join(mount, rel, "objects") + "\n"
	if b, ok := s.read(at("objects/info/alternates")); ok && len(strings.TrimSpace(string(b))) > 0 {
		s.note("your repository borrows objects from elsewhere (objects/info/alternates): those are not in the bottle, so the agent's git misses them")
	}
	s.add(File{Path: at("objects/info/alternates"), Data: []byte(alternates), Mode: 0o644})
	for _, f := range []string{"packed-refs", "index", "shallow", "info/exclude", "info/sparse-checkout", "ORIG_HEAD", "FETCH_HEAD"} {
		s.copy(at(f), at(f))
	}
	if entries, err := fs.ReadDir(s.root.FS(), dotOr(rel)); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "sharedindex.") && e.Type().IsRegular() {
				s.copy(at(e.Name()), at(e.Name()))
			}
		}
	}
	for _, tree := range []string{"refs", "reftable"} {
		if err := s.tree(at(tree)); err != nil {
			return err
		}
	}
	if depth >= maxModules {
		return nil
	}
	if fi, err := s.root.Lstat(at("modules")); err != nil || !fi.IsDir() {
		return nil
	}
	s.dir(at("modules"))
	return s.modules(at("modules"), mount, depth)
}

// modules seeds every submodule repository under dir (names may hold
// slashes, so a folder without HEAD is looked into).
func (s *seeder) modules(dir, mount string, depth int) error {
	entries, err := fs.ReadDir(s.root.FS(), dir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if s.full {
			return nil
		}
		if !e.IsDir() {
			continue
		}
		p := path.Join(dir, e.Name())
		if fi, err := s.root.Lstat(path.Join(p, "HEAD")); err == nil && fi.Mode().IsRegular() {
			if err := s.repo(p, mount, true, depth+1); err != nil {
				return err
			}
			continue
		}
		s.dir(p)
		if err := s.modules(p, mount, depth); err != nil {
			return err
		}
	}
	return nil
}

// tree copies the folders and regular files under rel (links are left
// out: in the bottle they would lead somewhere else).
func (s *seeder) tree(rel string) error {
	n := 0
	err := fs.WalkDir(s.root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == rel {
				return fs.SkipAll
			}
			return nil
		}
		if s.full {
			return fs.SkipAll
		}
		if n++; n > maxRefFiles {
			s.note("%s holds more than %d files: the rest are left out", rel, maxRefFiles)
			return fs.SkipAll
		}
		switch {
		case d.IsDir():
			s.dir(p)
		case d.Type().IsRegular():
			s.copy(p, p)
		}
		return nil
	})
	return err
}

func dotOr(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// GitPlan is what a bottle mounts for git, besides the workspace itself.
type GitPlan struct {
	Git Git
	// OwnRepo: the bottle's own repository (a volume of the bottle's) is
	// mounted at <workdir>/.git, masking the person's .git, or the place
	// the agent would make one. Seeded from HostGit when new.
	OwnRepo bool
	// HostGit is the person's repository, mounted read-only at
	// HostGitMount: the agent's repository borrows its objects.
	HostGit string
	// GitFile is the workspace's .git file, mounted read-only over itself
	// (a linked worktree's or a submodule's): its repository is outside
	// the workspace, so the agent has none there.
	GitFile string
	// Notes are for the person: what the agent's repository lacks.
	Notes []string
}

// PlanGit says what a bottle on workspace ws (resolved) mounts for git.
func PlanGit(ws string) (GitPlan, error) {
	g, err := InspectGit(ws)
	if err != nil {
		return GitPlan{}, err
	}
	if err := checkIgnoring(ws); err != nil {
		return GitPlan{}, err
	}
	p := GitPlan{Git: g}
	switch g.Kind {
	case GitNone:
		p.OwnRepo = true // a repository the agent makes is its own, never one in the person's folder
	case GitDir:
		if err := checkCredentials(ws, g.Dir); err != nil {
			return GitPlan{}, err
		}
		if common, ok := pointer(filepath.Join(g.Dir, "commondir"), "", g.Dir); ok && Within(ws, common) {
			return GitPlan{}, &Refusal{ws, fmt.Sprintf("its .git/commondir names %s, inside it: the agent could write "+
				"the configuration and hooks git on your machine takes from there", common)}
		}
		p.OwnRepo, p.HostGit = true, g.Dir
		p.Notes = append(p.Notes, filesInWorkspace(ws, g.Dir)...)
	case GitFile:
		if err := checkGitFile(ws); err != nil {
			return GitPlan{}, err
		}
		p.GitFile = filepath.Join(ws, ".git")
		p.Notes = append(p.Notes, "the workspace's .git is a file (a linked worktree or a submodule's checkout): "+
			"its repository lies outside the workspace and is not mounted, so the agent has no git repository there")
	}
	return p, nil
}

// checkCredentials refuses the repository dir (ws's .git) when its
// configuration holds a credential (ConfigCredentials): bb lends it to the
// agent read-only, and the agent would read it.
func checkCredentials(ws, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("opening the repository %s: %w", dir, err)
	}
	defer root.Close()
	found := repoCredentials(root.FS())
	if len(found) == 0 {
		return nil
	}
	if len(found) > 5 {
		found = append(found[:5], fmt.Sprintf("and %d more", len(found)-5))
	}
	return &Refusal{ws, "its git configuration holds a credential (" + strings.Join(found, ", ") + "), and bb lends the agent " +
		"that repository read-only: keep tokens in a credential helper instead (git remote set-url NAME URL-without-the-token; " +
		"git config --unset KEY), then start again"}
}

// checkGitFile refuses ws when its .git file names a repository, or a
// worktree's common folder, inside ws (the ".bare" layout): the file is
// kept read-only, but what it names would be the agent's to write,
// configuration and hooks that git on the host runs.
func checkGitFile(ws string) error {
	dir, ok := pointer(filepath.Join(ws, ".git"), "gitdir:", ws)
	if !ok {
		return nil
	}
	if Within(ws, dir) {
		return &Refusal{ws, fmt.Sprintf("its .git file names the repository %s, which lies inside it: the agent could write "+
			"that repository's configuration and hooks, which git on your machine runs; launch the bottle on a linked "+
			"worktree outside it (git worktree add), or on the repository's own folder", dir)}
	}
	if common, ok := pointer(filepath.Join(dir, "commondir"), "", dir); ok && Within(ws, common) {
		return &Refusal{ws, fmt.Sprintf("its repository's common folder %s lies inside it: the agent could write its "+
			"configuration and hooks, which git on your machine runs", common)}
	}
	return nil
}

// pointer reads a one-line file of git's that names a folder (a .git
// file's "gitdir: PATH", a commondir's PATH), relative to base, and
// returns it resolved.
func pointer(file, prefix, base string) (string, bool) {
	fi, err := os.Lstat(file)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > 4096 {
		return "", false
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	p, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), prefix)
	p = strings.TrimSpace(p)
	if !ok || p == "" {
		return "", false
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	return Resolve(p), true
}

// filesInWorkspace names the settings of the repository dir's own
// configuration that make git on the host read files the agent can write:
// a hooks folder (husky's .husky/) or an included configuration inside
// the workspace ws. They are the person's project files,
// as a Makefile is; the person is told, as bb cannot keep git from them.
func filesInWorkspace(ws, dir string) []string {
	var out []string
	for _, name := range []string{"config", "config.worktree"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		for _, e := range parseConfig(b) {
			var p string
			switch {
			case e.section == "core" && e.key == "hookspath":
				p = e.value
				if !filepath.IsAbs(p) && !strings.HasPrefix(p, "~") {
					p = filepath.Join(ws, p) // relative to the worktree
				}
			case (e.section == "include" || e.section == "includeif") && e.key == "path":
				p = e.value
				if !filepath.IsAbs(p) && !strings.HasPrefix(p, "~") {
					p = filepath.Join(dir, p) // relative to the file
				}
			default:
				continue
			}
			if strings.HasPrefix(p, "~") || !Within(ws, Resolve(p)) {
				continue
			}
			out = append(out, fmt.Sprintf("your repository's %s.%s is %s, in the workspace: git on your machine runs "+
				"what the agent writes there (read what it changed before you commit)", e.section, e.key, e.value))
		}
	}
	return out
}
