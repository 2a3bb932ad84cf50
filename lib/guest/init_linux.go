package guest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// InitOptions are what the init is started with.
type InitOptions struct {
	// SpecPath is the Spec's file.
	SpecPath string
	// Command is the agent's command.
	Command []string
	// Stderr gets what the init says (the container's log).
	Stderr io.Writer
}

// Init is the agent's init: it carries out the Spec as root, gives up root
// and every capability for good, and runs the agent's Session. It returns
// the agent's exit status.
func Init(ctx context.Context, o InitOptions) (int, error) {
	logf := func(format string, a ...any) {
		if o.Stderr != nil {
			fmt.Fprintf(o.Stderr, logPrefix+format+"\n", a...)
		}
	}
	f, err := os.Open(o.SpecPath)
	if err != nil {
		return 0, fmt.Errorf("reading the guest spec: %w", err)
	}
	spec, err := ReadSpec(f, o.SpecPath)
	f.Close()
	if err != nil {
		return 0, err
	}
	if len(o.Command) == 0 {
		return 0, errors.New("no command for the agent: want bb-egress guest init --spec FILE -- CMD [ARG...]")
	}
	if os.Geteuid() != 0 {
		return 0, errors.New("the guest init must start as root (it gives root up before the agent runs)")
	}
	r := &rooted{}
	u, err := r.lookupUser(spec.User)
	if err != nil {
		return 0, err
	}
	if spec.Home != "" {
		u.home = spec.Home
	}
	if !cleanAbs(u.home) || u.home == "/" {
		return 0, fmt.Errorf("the agent's user %q has the home %q: want a folder of its own", spec.User, u.home)
	}
	// As root: the system's files, the home, the sockets' places.
	for _, fl := range spec.Files {
		if fl.Owner != OwnerRoot {
			continue
		}
		if strings.HasPrefix(fl.Path, "~/") {
			return 0, fmt.Errorf("provisioning %s: a root file in the agent's home", fl.Path)
		}
		if err := r.writeRootFile(fl); err != nil {
			return 0, fmt.Errorf("provisioning %s: %w", fl.Path, err)
		}
	}
	if len(spec.Hosts) > 0 {
		if err := r.addHosts(spec.Hosts); err != nil {
			return 0, fmt.Errorf("adding to /etc/hosts: %w", err)
		}
	}
	if err := r.ownDir(u.home, u, 0o755); err != nil {
		return 0, fmt.Errorf("making the agent's home %s: %w", u.home, err)
	}
	for _, d := range spec.AgentDirs {
		if err := r.ownDir(d, u, 0o755); err != nil {
			return 0, fmt.Errorf("giving %s to the agent: %w", d, err)
		}
	}
	if err := r.ownDir(path.Dir(spec.Socket), u, 0o700); err != nil {
		return 0, fmt.Errorf("making the attach socket's folder: %w", err)
	}
	if spec.Relay.Socket != "" && spec.Relay.Mode != 0 {
		if err := os.Chmod(r.at(spec.Relay.Socket), os.FileMode(spec.Relay.Mode&0o777)); err != nil {
			return 0, fmt.Errorf("opening the sidecar's socket to the agent: %w", err)
		}
	}
	if err := dropPrivileges(u); err != nil {
		return 0, fmt.Errorf("giving up root: %w", err)
	}
	logf("%s %d gid %d, with no capabilities and no new privileges", strings.TrimPrefix(ReadyLine, logPrefix), u.uid, u.gid)
	// As the agent: its own files.
	for _, fl := range spec.Files {
		if fl.Owner != OwnerAgent {
			continue
		}
		if err := r.writeAgentFile(fl, u.home, spec.AgentDirs); err != nil {
			return 0, fmt.Errorf("provisioning %s: %w", fl.Path, err)
		}
	}
	s := &Session{Spec: spec, Command: o.Command, Env: agentEnv(os.Environ(), u), Logf: logf}
	return s.Run(ctx)
}

// rooted writes the guest's files as root.
type rooted struct{}

func (r *rooted) at(p string) string { return p }

type account struct {
	name     string
	uid, gid int
	groups   []int
	home     string
}

// lookupUser finds user (a name or uid, optionally :gid) in the guest's
// /etc/passwd, and its other groups in /etc/group.
func (r *rooted) lookupUser(user string) (*account, error) {
	name, group, hasGroup := strings.Cut(user, ":")
	passwd, err := os.ReadFile(r.at("/etc/passwd"))
	if err != nil {
		return nil, fmt.Errorf("reading the guest's /etc/passwd: %w", err)
	}
	var a *account
	sc := bufio.NewScanner(bytes.NewReader(passwd))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 7 || (f[0] != name && f[2] != name) {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			continue
		}
		a = &account{name: f[0], uid: uid, gid: gid, home: f[5]}
		break
	}
	if a == nil {
		return nil, fmt.Errorf("the agent's user %q is not in the image's /etc/passwd", user)
	}
	if hasGroup {
		gid, err := strconv.Atoi(group)
		if err != nil || gid < 0 {
			return nil, fmt.Errorf("the agent's user %q: want a numeric group", user)
		}
		a.gid = gid
	}
	if a.uid == 0 || a.gid == 0 {
		return nil, fmt.Errorf("the agent's user %q is root (uid %d, gid %d) in the image", user, a.uid, a.gid)
	}
	if groups, err := os.ReadFile(r.at("/etc/group")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(groups))
		for sc.Scan() {
			f := strings.Split(sc.Text(), ":")
			if len(f) < 4 {
				continue
			}
			gid, err := strconv.Atoi(f[2])
			if err != nil || gid == 0 || gid == a.gid {
				continue
			}
			for m := range strings.SplitSeq(f[3], ",") {
				if m == a.name {
					a.groups = append(a.groups, gid)
				}
			}
		}
	}
	return a, nil
}

// safeForRoot refuses a path root would write through a folder someone
// else could change: every folder from / to the file's, symlinks followed,
// must be root's and writable by no one else (sticky folders like /tmp
// neither).
func (r *rooted) safeForRoot(p string) (string, error) {
	dir, err := filepath.EvalSymlinks(r.at(path.Dir(p)))
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return "", err
		}
		if st.Sys().(*syscall.Stat_t).Uid != 0 || st.Mode().Perm()&0o022 != 0 {
			return "", fmt.Errorf("%s can be changed by others than root", d)
		}
		if d == "/" {
			break
		}
	}
	return filepath.Join(dir, path.Base(p)), nil
}

func (r *rooted) writeRootFile(fl File) error {
	p, err := r.safeForRoot(fl.Path)
	if err != nil {
		return err
	}
	if st, err := os.Lstat(p); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		return errors.New("it is a symlink")
	}
	return writeFile(p, fl, 0, 0, false)
}

// writeFile writes fl at p: appended once, kept, or replaced (a temporary
// file renamed over it), owned by uid:gid when chown.
func writeFile(p string, fl File, uid, gid int, chown bool) error {
	old, err := os.ReadFile(p)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if exists && fl.Keep {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if fl.AppendOnce {
		// In place: /etc/hosts may be a mount point, which a rename
		// cannot replace.
		if bytes.Contains(old, bytes.TrimSpace(fl.Content)) {
			return nil
		}
		add := fl.Content
		if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
			add = append([]byte("\n"), add...)
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, os.FileMode(fl.Mode))
		if err != nil {
			return err
		}
		if _, err := f.Write(add); err != nil {
			f.Close()
			return err
		}
		if chown && !exists {
			if err := f.Chown(uid, gid); err != nil {
				f.Close()
				return err
			}
		}
		return f.Close()
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".bb-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(fl.Content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), os.FileMode(fl.Mode)); err != nil {
		return err
	}
	if chown {
		if err := os.Lchown(tmp.Name(), uid, gid); err != nil {
			return err
		}
	}
	return os.Rename(tmp.Name(), p)
}

// addHosts adds each line to /etc/hosts that does not have it.
func (r *rooted) addHosts(lines []string) error {
	var add []byte
	old, err := os.ReadFile(r.at("/etc/hosts"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, l := range lines {
		if !bytes.Contains(old, []byte(l)) {
			add = append(add, l...)
			add = append(add, '\n')
		}
	}
	if len(add) == 0 {
		return nil
	}
	return r.writeRootFile(File{Path: "/etc/hosts", Mode: 0o644, Owner: OwnerRoot, Content: add, AppendOnce: true})
}

// ownDir makes d a folder owned by the agent (its parents root's), or
// gives an existing one to it: never through a symlink.
func (r *rooted) ownDir(d string, u *account, mode os.FileMode) error {
	p := r.at(d)
	st, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, err := r.safeForRoot(d); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Mkdir(p, mode); err != nil {
			return err
		}
	case err != nil:
		return err
	case st.Mode()&fs.ModeSymlink != 0:
		return errors.New("it is a symlink")
	case !st.IsDir():
		return errors.New("it is not a folder")
	}
	if err := os.Lchown(p, u.uid, u.gid); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// writeAgentFile writes an agent's file (or folder), as the agent, in its
// home or one of dirs.
func (r *rooted) writeAgentFile(fl File, home string, dirs []string) error {
	p := fl.Path
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		p = path.Join(home, rest)
	}
	inside := strings.HasPrefix(p, home+"/")
	for _, d := range dirs {
		inside = inside || strings.HasPrefix(p, d+"/")
	}
	if !inside {
		return fmt.Errorf("not in the agent's home %s", home)
	}
	if fl.Dir {
		if err := os.MkdirAll(r.at(p), os.FileMode(fl.Mode)); err != nil {
			return err
		}
		return os.Chmod(r.at(p), os.FileMode(fl.Mode))
	}
	return writeFile(r.at(p), fl, 0, 0, false)
}

// agentEnv is the init's environment with the agent's HOME, USER and
// LOGNAME.
func agentEnv(environ []string, u *account) []string {
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HOME" || k == "USER" || k == "LOGNAME" {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "HOME="+u.home, "USER="+u.name, "LOGNAME="+u.name)
}

// dropPrivileges gives up root for good, in every thread of the process:
// every capability out of the bounding set, no new privileges (a setuid
// binary or file capability gives nothing back), then the agent's groups,
// gid and uid (which empties the permitted and effective sets). It checks
// the result in /proc.
func dropPrivileges(u *account) error {
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 && e != syscall.EINVAL {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, e)
		}
	}
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("setting no new privileges: %w", e)
	}
	if err := syscall.Setgroups(u.groups); err != nil {
		return fmt.Errorf("setting the groups: %w", err)
	}
	if err := syscall.Setresgid(u.gid, u.gid, u.gid); err != nil {
		return fmt.Errorf("setting the gid: %w", err)
	}
	if err := syscall.Setresuid(u.uid, u.uid, u.uid); err != nil {
		return fmt.Errorf("setting the uid: %w", err)
	}
	return checkDropped(u)
}

// checkDropped reads every thread's status: no capability in any set, no
// new privileges, the agent's ids.
func checkDropped(u *account) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/status")
		if err != nil {
			continue // a thread that ended
		}
		fields := map[string]string{}
		for l := range strings.SplitSeq(string(b), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
		for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
			if v, ok := fields[k]; ok && strings.Trim(v, "0") != "" {
				return fmt.Errorf("thread %s still has capabilities (%s %s)", t.Name(), k, v)
			}
		}
		if fields["NoNewPrivs"] != "1" {
			return fmt.Errorf("thread %s has no_new_privs %q", t.Name(), fields["NoNewPrivs"])
		}
		want := strconv.Itoa(u.uid)
		if ids := strings.Fields(fields["Uid"]); len(ids) < 4 || ids[0] != want || ids[1] != want || ids[2] != want || ids[3] != want {
			return fmt.Errorf("thread %s has uids %q", t.Name(), fields["Uid"])
		}
	}
	return nil
}
