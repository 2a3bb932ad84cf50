package smolvm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
)

func (l *launch) provision(ctx context.Context) error {
	return provision(ctx, l.t, l.Plan, l.Store, l.SidecarBinary)
}

// upload is one file provisioning puts in the agent's VM.
type upload struct {
	path     string // in the VM
	data     []byte
	local    string // or the host file to copy
	mode     os.FileMode
	uid, gid int
}

// provision puts into the agent's running VM, before its command starts,
// what it needs: bb-egress (the guest helper), the bottle's CA (at the
// plan's ca_file and appended to the system store), bb.egress in
// /etc/hosts, the git user and SSH-to-HTTPS rules, the prompt and the
// plan's files — system files as root, the home's as the agent's user. It
// also checks that smolvm will run the agent as the plan's user: smolvm
// runs every command as the image's USER, and has no flag for another.
func provision(ctx context.Context, t *tool, p *plan.Plan, st *state.Store, helper string) error {
	a, vm := p.Agent, p.Smolvm.VM
	base := filepath.Join(st.BottleDir(p.Slug), StateDir)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(base, "provision-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, p := range []string{dir, helper} {
		// machine cp takes a SRC holding ':' for machine:path.
		if strings.Contains(p, ":") {
			return exit.Usagef("%s holds a ':', which smolvm machine cp reads as a machine's name", p)
		}
	}
	n := 0
	download := func(guest string) ([]byte, error) {
		n++
		local := filepath.Join(dir, "in-"+strconv.Itoa(n))
		if err := t.run(ctx, nil, "machine", "cp", vm+":"+guest, local); err != nil {
			return nil, err
		}
		return os.ReadFile(local)
	}
	passwd, err := download("/etc/passwd")
	if err != nil {
		return fmt.Errorf("reading the image's /etc/passwd: %w", err)
	}
	uid, gid, home, err := backend.LookupUser(passwd, a.User)
	if err != nil {
		return err
	}
	if a.Home != "" {
		home = a.Home
	}
	if !path.IsAbs(home) || path.Clean(home) == "/" {
		return exit.Usagef("the agent's user %q has the home %q: want a folder of its own", a.User, home)
	}
	out, err := t.output(ctx, nil, "machine", "exec", "--name", vm, "--", "id", "-u")
	if err != nil {
		return err
	}
	if runs, err := strconv.Atoi(strings.TrimSpace(string(out))); err != nil || runs != uid {
		return exit.Usage(fmt.Errorf("smolvm runs the agent's commands as the image's USER (uid %s), not the plan's agent.user %q (uid %d): it has no flag for another",
			strings.TrimSpace(string(out)), a.User, uid), fmt.Sprintf("end the agent's Dockerfile with USER %s", a.User))
	}
	caPEM, err := os.ReadFile(filepath.Join(st.EgressDir(p.Slug), state.CACertFile))
	if err != nil {
		return fmt.Errorf("reading the bottle's CA: %w", err)
	}
	// A file the image lacks is an empty one; smolvm says so as any
	// failure, so a missing bundle or hosts file is taken as empty.
	bundle, _ := download(backend.SystemCABundle)
	hosts, _ := download("/etc/hosts")
	files := []upload{
		{path: GuestHelper, local: helper, mode: 0o755},
		{path: a.CAFile, data: caPEM, mode: 0o644},
		{path: backend.SystemCABundle, data: backend.AppendCA(bundle, caPEM), mode: 0o644},
		{path: "/etc/hosts", data: withHost(hosts, p.Smolvm.SidecarAddress, p.Egress.Host), mode: 0o644},
		{path: path.Join(home, ".gitconfig"), data: backend.GitConfig(a.GitUser, p.Egress.Routes), mode: 0o644, uid: uid, gid: gid},
	}
	homes, err := backend.HomeFiles(a.Files, a.Prompt, home)
	if err != nil {
		return err
	}
	var dirs []string
	for _, f := range homes {
		if f.Dir {
			dirs = append(dirs, f.Path)
			continue
		}
		if f.Keep {
			// The CLI's own state: a resumed agent keeps its own.
			if _, err := download(f.Path); err == nil {
				continue
			}
		}
		files = append(files, upload{path: f.Path, data: f.Data, mode: f.Mode, uid: uid, gid: gid})
	}
	if len(dirs) > 0 {
		// Made by the agent's own user: smolvm's cp makes a missing parent
		// as root, and a folder of root's in its home the agent could not
		// write.
		args := append([]string{"machine", "exec", "--name", vm, "--", "mkdir", "-p"}, dirs...)
		if err := t.run(ctx, nil, args...); err != nil {
			return fmt.Errorf("making the agent's folders in %s: %w", home, err)
		}
	}
	for i, f := range files {
		src := f.local
		if src == "" {
			src = filepath.Join(dir, "out-"+strconv.Itoa(i))
			if err := os.WriteFile(src, f.data, 0o600); err != nil {
				return err
			}
		}
		err := t.run(ctx, nil, "machine", "cp", "--mode", fmt.Sprintf("%o", f.mode.Perm()),
			"--uid", strconv.Itoa(f.uid), "--gid", strconv.Itoa(f.gid), src, vm+":"+f.path)
		if err != nil {
			return fmt.Errorf("copying %s into %s: %w", f.path, vm, err)
		}
	}
	return nil
}

// withHost is an /etc/hosts with name at addr, in place of any line that
// named it.
func withHost(hosts []byte, addr, name string) []byte {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(hosts))
	for sc.Scan() {
		fields := strings.Fields(strings.SplitN(sc.Text(), "#", 2)[0])
		if len(fields) > 1 && slices.Contains(fields[1:], name) {
			continue
		}
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	if b.Len() == 0 {
		b.WriteString("127.0.0.1\tlocalhost\n")
	}
	fmt.Fprintf(&b, "%s\t%s\n", addr, name)
	return b.Bytes()
}
