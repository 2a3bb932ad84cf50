package backend

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/workspace"
)

// FetchedRefs is where the agent's branches land in the person's
// repository: refs/remotes/bb/<slug>/<branch>, shown as bb/<slug>/<branch>.
func FetchedRefs(slug string) string { return "refs/remotes/bb/" + slug + "/" }

// What a fetch takes from the agent at most: a bundle is its new work,
// and a person looks through its branches; past either bound it is more
// than that, and would land in the person's repository (a file per ref)
// or fill the host's temporary folder (often memory) on its way.
const MaxFetchBranches = 10_000

// MaxBundleBytes is the largest bundle a fetch takes (a variable for tests).
var MaxBundleBytes int64 = 2 << 30

// ErrNoAgentRepo is a bottle without a repository of its own.
var ErrNoAgentRepo = errors.New("the bottle has no git repository of its own")

// FetchGit brings the branches of bottle slug's own repository into the
// person's repository, the bottle's workspace, under FetchedRefs(slug),
// and returns the refs it holds there now. The agent's repository never
// reaches git on the host as a repository: it comes as a bundle, made in
// the backend's sandbox, whose objects the host's git checks as it fetches
// (transfer.fsckObjects), with no hook or monitor of the person's run. The
// person's own branches are not touched. bundle, when set, gets the
// bundle instead (for a workspace that is no repository).
func FetchGit(ctx context.Context, b Backend, st *state.Store, p *plan.Plan, bundle string) ([]string, error) {
	ex, ok := b.(GitExporter)
	if !ok {
		return nil, Unsupported(b.Name(), "hand out a bottle's git repository", "")
	}
	slug := p.Slug
	ld, err := ReadLaunched(st, slug)
	if err != nil {
		return nil, exit.Usage(err)
	}
	if ld.Workspace == "" {
		return nil, exit.Usage(ErrNoAgentRepo)
	}
	if err := workspace.Same(ld.Workspace, ld.WorkspaceID); err != nil {
		return nil, exit.Usage(err)
	}
	g, err := workspace.InspectGit(ld.Workspace)
	if err != nil {
		return nil, exit.Usage(err)
	}
	o := GitExport{Slug: slug, Image: ld.AgentImage, User: p.Agent.User}
	if g.Kind == workspace.GitDir {
		o.HostGit = g.Dir
		if o.Exclude, err = hostTips(ctx, ld.Workspace); err != nil {
			return nil, err
		}
	} else if bundle == "" {
		return nil, exit.Usage(fmt.Errorf("the workspace %s is no git repository to fetch into", ld.Workspace),
			fmt.Sprintf("'bb-launch fetch %s --bundle FILE' writes the agent's branches to FILE; 'git clone FILE' makes a repository of them", slug))
	}
	// Somewhere the person's git can read it (see hostGit), and no one else.
	dir, err := os.MkdirTemp("", "bb-fetch-")
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("making a folder for the agent's bundle: %w", err))
	}
	defer os.RemoveAll(dir)
	if uid, gid, ok := foreignOwner(ld.Workspace); ok {
		os.Chown(dir, uid, gid)
	}
	tmp, err := os.Create(filepath.Join(dir, "agent.bundle"))
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("making a file for the agent's bundle: %w", err))
	}
	lw := &limitWriter{w: tmp, left: MaxBundleBytes}
	err = ex.ExportGit(ctx, o, lw)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if lw.over || (err != nil && strings.Contains(err.Error(), BundleTooLarge)) {
		return nil, exit.Backend(fmt.Errorf("bottle %s's branches make a bundle larger than %d MiB, more than bb takes back: nothing was fetched",
			slug, MaxBundleBytes>>20), reviewHint(slug))
	}
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(tmp.Name()); err != nil || fi.Size() == 0 {
		return nil, nil // nothing the person's repository does not have
	}
	if bundle != "" {
		if err := os.Rename(tmp.Name(), bundle); err != nil {
			data, rerr := os.ReadFile(tmp.Name())
			if rerr == nil {
				err = os.WriteFile(bundle, data, 0o644)
			}
			if err != nil {
				return nil, exit.Backend(fmt.Errorf("writing %s: %w", bundle, err))
			}
		}
		return nil, nil
	}
	if n, err := bundleBranches(tmp.Name(), MaxFetchBranches); err != nil {
		return nil, exit.Backend(fmt.Errorf("reading bottle %s's bundle: %w", slug, err))
	} else if n > MaxFetchBranches {
		return nil, exit.Backend(fmt.Errorf("bottle %s has more than %d branches, more than bb brings into your repository: nothing was fetched",
			slug, MaxFetchBranches), reviewHint(slug))
	}
	if _, err := hostGit(ctx, ld.Workspace, "fetch", "--no-write-fetch-head", "--no-recurse-submodules", "--no-auto-gc",
		"--quiet", tmp.Name(), "+refs/heads/*:"+FetchedRefs(slug)+"*"); err != nil {
		return nil, err
	}
	out, err := hostGit(ctx, ld.Workspace, "for-each-ref", "--format=%(refname)", FetchedRefs(slug))
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func reviewHint(slug string) string {
	return fmt.Sprintf("its repository stays in the bottle: look at what it holds ('bb-launch exec %s -- git log --stat --branches'), "+
		"and have the agent remove what you do not want back", slug)
}

// limitWriter passes on at most left bytes, then fails.
type limitWriter struct {
	w    io.Writer
	left int64
	over bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		l.over = true
		return 0, errors.New("the bundle is larger than bb takes")
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// bundleBranches counts the refs a bundle's header lists, reading no
// further than max+1 of them: a bundle is "# v2 git bundle" (or v3, with
// "@" capabilities), "-" prerequisites, refs, then an empty line.
func bundleBranches(file string, max int) (int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	n := 0
	for first := true; sc.Scan(); first = false {
		line := sc.Text()
		switch {
		case first:
			if line != "# v2 git bundle" && line != "# v3 git bundle" {
				return 0, errors.New("it is no git bundle")
			}
		case line == "":
			return n, nil
		case line[0] == '@' || line[0] == '-':
		default:
			if n++; n > max {
				return n, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("its header has no end")
}

// hostTips are the commits the person's branches and tags point at.
func hostTips(ctx context.Context, ws string) ([]string, error) {
	out, err := hostGit(ctx, ws, "for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags", "refs/remotes")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var tips []string
	for _, id := range strings.Fields(out) {
		if !seen[id] && len(tips) < 4096 {
			seen[id] = true
			tips = append(tips, id)
		}
	}
	return tips, nil
}

// hostGit runs git on the person's repository at ws, as they would, but
// with no hook, monitor or pager of any configuration run, nothing asked
// on a terminal, and every object it receives checked.
func hostGit(ctx context.Context, ws string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", ws, "-c", "core.hooksPath=" + os.DevNull,
		"-c", "core.fsmonitor=false", "-c", "transfer.fsckObjects=true", "-c", "core.pager=cat"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0")
	if uid, gid, ok := foreignOwner(ws); ok {
		// bb runs as root on another's checkout (sudo): git refuses a
		// repository whose owner is not its user, and rightly. So it runs
		// as the owner, with no configuration of root's (which it may not
		// read) and none of the owner's home either.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Env = append(cmd.Env, "HOME="+os.DevNull, "XDG_CONFIG_HOME="+os.DevNull, "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1")
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", exit.Backend(errors.New("git is not installed on this machine"))
		}
		return "", exit.Backend(fmt.Errorf("git %s in %s: %w: %s", args[0], ws, err, strings.TrimSpace(errb.String())))
	}
	return out.String(), nil
}

// GitBundleScript is the shell script a backend runs (sh -c SCRIPT NAME
// ARGS...) in a sandbox of its own, with the bottle's repository read-only
// at repo, to bundle its branches to stdout, ARGS (NotArgs) left out. A
// repository with nothing to send prints nothing: git refuses an empty
// bundle. git's messages go to stderr. The bundle file is bounded just
// past MaxBundleBytes (ulimit -f, in 512-byte blocks), so that the
// sandbox's disk holds no more than a fetch takes; past it the script
// says BundleTooLarge.
func GitBundleScript(repo string) string {
	blocks := strconv.FormatInt(MaxBundleBytes/512+2, 10)
	return `git --git-dir=` + repo + ` rev-parse -q --verify HEAD >/dev/null 2>&1 || git --git-dir=` + repo +
		` for-each-ref --count=1 refs/heads | grep -q . || exit 0
out=$(ulimit -f ` + blocks + ` && git --git-dir=` + repo + ` bundle create /tmp/agent.bundle --branches "$@" 2>&1) || {
	rc=$?
	case $out in *"empty bundle"*) exit 0 ;; esac
	case "$rc:$out" in 153:*|*"too large"*|*"size limit"*|*"of signal 25"*) echo "` + BundleTooLarge + `" >&2; exit 3 ;; esac
	printf '%s\n' "$out" >&2; exit 1; }
cat /tmp/agent.bundle`
}

// BundleTooLarge is what GitBundleScript says of a bundle past the bound.
const BundleTooLarge = "bb-export: the bundle is past the bound"

// NotArgs leaves commits out of a bundle: "--not" and their ids, which are
// hex, never options.
func NotArgs(ids []string) []string {
	var out []string
	for _, id := range ids {
		if isHex(id) {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return append([]string{"--not"}, out...)
}

func isHex(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
