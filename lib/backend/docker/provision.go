package docker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
)

// SystemCABundle is where Debian-like images keep the CAs that curl, git
// and OpenSSL trust with no variable set.
const SystemCABundle = "/etc/ssl/certs/ca-certificates.crt"

// PromptFile is where the agent finds its prompt, under its home.
const PromptFile = ".bb/prompt.md"

// provisioned is one file put into the agent before it starts.
type provisioned struct {
	path     string // absolute, in the container
	data     []byte
	mode     int64
	uid, gid int
	dir      bool
}

// provision copies into the created agent, before its command starts, what
// it needs: the bottle's CA (at the plan's ca_file and appended to the
// system store, so clients trust it with no variable), the git user and the
// rules that send SSH remotes to GitHub over HTTPS (through the sidecar),
// and the prompt. It needs no root inside: the engine writes the files,
// owned by the agent's user.
func (l *launch) provision(ctx context.Context) error {
	a := l.Plan.Agent
	uid, gid, home, err := l.lookupUser(ctx, a.User)
	if err != nil {
		return err
	}
	if a.Home != "" {
		home = a.Home
	}
	if !path.IsAbs(home) || path.Clean(home) == "/" {
		// Provisioning makes the home the agent's own.
		return exit.Usagef("the agent's user %q has the home %q: want a folder of its own", a.User, home)
	}
	caPEM, err := os.ReadFile(filepath.Join(l.Store.EgressDir(l.Plan.Slug), state.CACertFile))
	if err != nil {
		return fmt.Errorf("reading the bottle's CA: %w", unwrapPath(err))
	}
	bundle, err := l.readFile(ctx, SystemCABundle)
	if err != nil {
		return err
	}
	// A resumed image already has it: appended once, not at every boot.
	if !bytes.Contains(bundle, bytes.TrimSpace(caPEM)) {
		if len(bundle) > 0 && !bytes.HasSuffix(bundle, []byte("\n")) {
			bundle = append(bundle, '\n')
		}
		bundle = append(bundle, caPEM...)
	}
	files := []provisioned{
		{path: path.Dir(a.CAFile), mode: 0o755, dir: true},
		{path: a.CAFile, data: caPEM, mode: 0o644},
		{path: SystemCABundle, data: bundle, mode: 0o644},
		{path: home, mode: 0o755, uid: uid, gid: gid, dir: true},
		{path: path.Join(home, ".gitconfig"), data: gitConfig(a.GitUser), mode: 0o644, uid: uid, gid: gid},
	}
	planned, err := homeFiles(a.Files, a.Prompt, home, uid, gid)
	if err != nil {
		return err
	}
	files = append(files, planned...)
	tarball, err := tarOf(files)
	if err != nil {
		return err
	}
	_, err = l.api.CopyToContainer(ctx, l.agentID, client.CopyToContainerOptions{
		DestinationPath: "/", Content: bytes.NewReader(tarball)})
	if err != nil {
		return exit.Backend(fmt.Errorf("copying files into %s: %w", l.d.AgentContainer, err))
	}
	return nil
}

// homeFiles are the plan's files (and the prompt, for a plan that does not
// list it), with the folders they need, all owned by the agent's user. They
// must be in its home: a file written as the agent's own anywhere else
// would hand it a part of the system.
func homeFiles(list []plan.File, prompt, home string, uid, gid int) ([]provisioned, error) {
	var out []provisioned
	dirs := map[string]bool{home: true}
	hasPrompt := false
	add := func(p string, data []byte, mode int64) error {
		if !path.IsAbs(p) || path.Clean(p) != p || !strings.HasPrefix(p, home+"/") {
			return exit.Usagef("plan agent.files: %s is not a clean path in the agent's home %s", p, home)
		}
		var parents []string
		for d := path.Dir(p); !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			out = append(out, provisioned{path: parents[i], mode: 0o755, uid: uid, gid: gid, dir: true})
		}
		out = append(out, provisioned{path: p, data: data, mode: mode, uid: uid, gid: gid})
		return nil
	}
	for _, f := range list {
		mode, err := f.FileMode()
		if err != nil {
			return nil, exit.Usage(fmt.Errorf("plan agent.files: %w", err))
		}
		if err := add(f.Path, []byte(f.Content), int64(mode.Perm())); err != nil {
			return nil, err
		}
		hasPrompt = hasPrompt || f.Path == path.Join(home, PromptFile)
	}
	if prompt != "" && !hasPrompt {
		if err := add(path.Join(home, PromptFile), []byte(prompt), 0o644); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readFile reads one file of the created agent; a missing one is empty.
func (l *launch) readFile(ctx context.Context, p string) ([]byte, error) {
	res, err := l.api.CopyFromContainer(ctx, l.agentID, client.CopyFromContainerOptions{SourcePath: p})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("reading %s from %s: %w", p, l.d.AgentContainer, err))
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, exit.Backend(fmt.Errorf("reading %s from %s: %w", p, l.d.AgentContainer, err))
		}
		if hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(io.LimitReader(tr, 64<<20))
			if err != nil {
				return nil, exit.Backend(fmt.Errorf("reading %s from %s: %w", p, l.d.AgentContainer, err))
			}
			return b, nil
		}
	}
}

// lookupUser finds user (a name or a numeric uid, either optionally with
// :group) in the image's /etc/passwd: its uid, gid and home.
func (l *launch) lookupUser(ctx context.Context, user string) (uid, gid int, home string, err error) {
	name, group, hasGroup := strings.Cut(user, ":")
	passwd, err := l.readFile(ctx, "/etc/passwd")
	if err != nil {
		return 0, 0, "", err
	}
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

// gitConfig is the agent's ~/.gitconfig: who it commits as, and GitHub's
// SSH remotes rewritten to HTTPS, the only way out the sidecar offers (and
// where it injects the git token).
func gitConfig(u *manifest.GitUser) []byte {
	var b strings.Builder
	b.WriteString("# Written by bb-launch.\n")
	if u != nil {
		fmt.Fprintf(&b, "[user]\n\tname = %s\n\temail = %s\n", gitQuote(u.Name), gitQuote(u.Email))
	}
	b.WriteString("[url \"https://github.com/\"]\n\tinsteadOf = git@github.com:\n\tinsteadOf = ssh://git@github.com/\n")
	return []byte(b.String())
}

// gitQuote quotes a git config value: inside double quotes only " and \
// are special, and a line break cannot be written at all.
func gitQuote(s string) string {
	s = strings.NewReplacer("\\", "\\\\", "\"", "\\\"", "\n", " ", "\r", " ", "\x00", "").Replace(s)
	return "\"" + s + "\""
}

// tarOf writes files as a tar to extract at /, each owned as it says.
func tarOf(files []provisioned) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: strings.TrimPrefix(f.path, "/"), Mode: f.mode, Uid: f.uid, Gid: f.gid,
			ModTime: time.Now(), Typeflag: tar.TypeReg, Size: int64(len(f.data)), Format: tar.FormatPAX}
		if f.dir {
			hdr.Typeflag, hdr.Size, hdr.Name = tar.TypeDir, 0, hdr.Name+"/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("packing %s: %w", f.path, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("packing %s: %w", f.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("packing the agent's files: %w", err)
	}
	return buf.Bytes(), nil
}
