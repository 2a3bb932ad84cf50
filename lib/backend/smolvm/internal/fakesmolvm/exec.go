package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/bb-bottles/bb/lib/backend/smolvm/internal/syntax"
)

// guestHelper is where bb puts its guest helper in the agent's VM.
const guestHelper = "/bb/bin/bb-egress"

// execCmd is `machine exec`: smolvm starts a stopped machine first
// (vm_common::ensure_running_and_connect), then runs the command in the
// image's root filesystem as the image's user, with the machine's env and
// the -e ones over it, in -w or the machine's workdir.
func execCmd(dir string, in *syntax.Invocation, stdin io.Reader, stdout, stderr io.Writer) error {
	argv := in.Trailing
	var attach *attachment
	err := withState(dir, func(st *state) error {
		m, err := get(st, name(in))
		if err != nil {
			return err
		}
		if m.State != "running" {
			if err := start(st, m.Name, io.Discard); err != nil {
				return err
			}
		}
		m.ExecsSince++
		if m.ExecsSince == 1 && envTrue("SMOLVM_FAKE_EXEC_137") {
			return exitCode(137)
		}
		uid, gid, err := guestUser(m)
		if err != nil {
			return err
		}
		g := &guest{st: st, m: m, uid: uid, gid: gid, env: append(slices.Clone(m.Env), in.Values["--env"]...),
			workdir: in.Value("--workdir"), stdout: stdout, stderr: stderr}
		if g.workdir == "" {
			g.workdir = m.Workdir
		}
		if in.Bools["--detach"] {
			st.NextPID++
			m.Procs = append(m.Procs, proc{PID: st.NextPID, Argv: argv, UID: uid, Env: g.env})
			if isHelper(argv, "hold") {
				if err := g.hold(argv); err != nil {
					return err
				}
			}
			fmt.Fprintln(stdout, st.NextPID)
			return nil
		}
		if isHelper(argv, "join") {
			if !in.Bools["--interactive"] || !in.Bools["--tty"] {
				return failf("fakesmolvm: bb-egress guest join wants -it")
			}
			attach, err = g.startAttach(argv)
			return err
		}
		return g.run(argv)
	})
	if err != nil || attach == nil {
		return err
	}
	return attach.run(dir, stdin, stdout)
}

func envTrue(k string) bool {
	v := strings.ToLower(os.Getenv(k))
	return v == "1" || v == "true"
}

type guest struct {
	st             *state
	m              *machine
	uid, gid       int
	env            []string
	workdir        string
	stdout, stderr io.Writer
}

func isHelper(argv []string, sub string) bool {
	return len(argv) >= 3 && argv[0] == guestHelper && argv[1] == "guest" && argv[2] == sub
}

// run runs one modelled guest command.
func (g *guest) run(argv []string) error {
	if len(argv) == 0 {
		return failf("no command")
	}
	switch argv[0] {
	case "true":
		return nil
	case "false":
		return exitCode(1)
	case "echo":
		fmt.Fprintln(g.stdout, strings.Join(argv[1:], " "))
		return nil
	case "sh", "/bin/sh":
		if len(argv) == 3 && argv[1] == "-c" {
			if n, ok := strings.CutPrefix(argv[2], "exit "); ok {
				c, err := strconv.Atoi(strings.TrimSpace(n))
				if err == nil {
					return exitCode(c)
				}
			}
			if s, ok := strings.CutPrefix(argv[2], "echo "); ok {
				fmt.Fprintln(g.stdout, s)
				return nil
			}
		}
		fmt.Fprintf(g.stderr, "sh: the fake's shell runs only 'exit N' and 'echo ...'\n")
		return exitCode(2)
	case "pwd":
		fmt.Fprintln(g.stdout, g.workdir)
		return nil
	case "env":
		for _, e := range g.env {
			fmt.Fprintln(g.stdout, e)
		}
		return nil
	case "id":
		switch {
		case len(argv) == 2 && argv[1] == "-u":
			fmt.Fprintln(g.stdout, g.uid)
		case len(argv) == 2 && argv[1] == "-g":
			fmt.Fprintln(g.stdout, g.gid)
		default:
			fmt.Fprintf(g.stdout, "uid=%d gid=%d\n", g.uid, g.gid)
		}
		return nil
	case "cat":
		for _, p := range argv[1:] {
			f, ok := readGuest(g.m, path.Clean(p))
			if !ok || f.Dir {
				fmt.Fprintf(g.stderr, "cat: %s: No such file or directory\n", p)
				return exitCode(1)
			}
			if !g.may(f, 4) {
				fmt.Fprintf(g.stderr, "cat: %s: Permission denied\n", p)
				return exitCode(1)
			}
			g.stdout.Write(f.data()) //nolint:errcheck
		}
		return nil
	case "mkdir":
		if len(argv) < 3 || argv[1] != "-p" {
			return exitCode(1)
		}
		for _, d := range argv[2:] {
			if err := g.mkdirAll(path.Clean(d)); err != nil {
				fmt.Fprintf(g.stderr, "mkdir: %v\n", err)
				return exitCode(1)
			}
		}
		return nil
	case guestHelper:
		f, ok := readGuest(g.m, guestHelper)
		if !ok || f.Mode&0o111 == 0 {
			fmt.Fprintf(g.stderr, "exec: %q: executable file not found\n", guestHelper)
			return exitCode(127)
		}
		switch {
		case isHelper(argv, "status"):
			return g.status(argv)
		case isHelper(argv, "dial"):
			return g.dial(argv)
		case isHelper(argv, "hold"):
			return failf("fakesmolvm: bb-egress guest hold runs detached (-d)")
		}
		return exitCode(2)
	}
	fmt.Fprintf(g.stderr, "exec: %q: executable file not found in $PATH\n", argv[0])
	return exitCode(127)
}

// may says whether the exec's user may read (4) or write (2) f.
func (g *guest) may(f *file, bit uint32) bool {
	switch {
	case g.uid == 0:
		return true
	case f.UID == g.uid:
		return f.Mode&(bit<<6) != 0
	case f.GID == g.gid:
		return f.Mode&(bit<<3) != 0
	}
	return f.Mode&bit != 0
}

func (g *guest) mkdirAll(d string) error {
	if f, ok := readGuest(g.m, d); ok {
		if !f.Dir {
			return fmt.Errorf("%s: File exists", d)
		}
		return nil
	}
	parent := path.Dir(d)
	if err := g.mkdirAll(parent); err != nil {
		return err
	}
	pf, _ := readGuest(g.m, parent)
	if pf != nil && !g.may(pf, 2) {
		return fmt.Errorf("cannot create directory '%s': Permission denied", d)
	}
	g.m.Files[d] = &file{Dir: true, Mode: 0o755, UID: g.uid, GID: g.gid}
	return nil
}

// helperArgs reads "--socket S", "--timeout D", "--wait" and what follows
// "--" or the first plain word.
func helperArgs(argv []string) (socket string, wait bool, rest []string) {
	for i := 3; i < len(argv); i++ {
		switch argv[i] {
		case "--socket":
			if i+1 < len(argv) {
				socket = argv[i+1]
				i++
			}
		case "--timeout":
			i++
		case "--wait":
			wait = true
		case "--":
			return socket, wait, argv[i+1:]
		default:
			return socket, wait, argv[i:]
		}
	}
	return socket, wait, nil
}

func (g *guest) hold(argv []string) error {
	socket, wait, cmd := helperArgs(argv)
	if socket == "" || len(cmd) == 0 {
		return failf("fakesmolvm: guest hold wants --socket and a command")
	}
	if h := g.m.Holder; h != nil && h.Running && h.Socket == socket {
		return failf("fakesmolvm: %s is already held", socket)
	}
	g.m.Holder = &holder{Socket: socket, Command: cmd, Started: !wait, Running: true, UID: g.uid}
	return nil
}

func (g *guest) status(argv []string) error {
	socket, _, _ := helperArgs(argv)
	h := g.m.Holder
	out := map[string]any{"running": false}
	if h != nil && h.Socket == socket {
		out["running"] = h.Running
		if h.ExitCode != nil {
			out["exit_code"] = *h.ExitCode
		}
	}
	b, _ := json.Marshal(out)
	fmt.Fprintln(g.stdout, string(b))
	return nil
}

// dial models a TCP connection from g.m by smolvm's network rules
// (crates/smolvm-network/src/stack.rs classify_guest_frame, egress.rs).
func (g *guest) dial(argv []string) error {
	_, _, rest := helperArgs(argv)
	if len(rest) != 1 {
		return exitCode(2)
	}
	host, port, err := net.SplitHostPort(rest[0])
	if err != nil {
		return exitCode(2)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ip, err = g.resolve(host)
		if err != nil {
			fmt.Fprintf(g.stderr, "bb-egress guest dial: %v\n", err)
			return exitCode(1)
		}
	}
	refuse := func(why string) error {
		fmt.Fprintf(g.stderr, "bb-egress guest dial: %s: %s\n", rest[0], why)
		return exitCode(1)
	}
	if !g.m.Net {
		return refuse("network is unreachable (the machine has no network)")
	}
	fabric := netip.MustParsePrefix("100.96.0.0/16")
	if g.m.Network != "" && fabric.Contains(ip) && ip.String() != g.m.Address {
		for _, o := range g.st.Machines {
			if o != g.m && o.State == "running" && o.Network == g.m.Network && o.Address == ip.String() {
				if listens(o, port) {
					return nil
				}
				return refuse("connection refused")
			}
		}
		return refuse("connection timed out (no member of network " + g.m.Network + " has it)")
	}
	if len(g.m.AllowHosts) > 0 && !slices.Contains(g.m.AllowHosts, ip.String()) {
		return refuse("connection refused (egress policy denied " + ip.String() + ")")
	}
	fmt.Fprintf(g.stderr, "bb-egress guest dial: %s reached outside the fabric\n", rest[0])
	return nil
}

// resolve looks host up in the machine's /etc/hosts; the fake has no DNS,
// and a machine with an allow-list answers every other name NXDOMAIN.
func (g *guest) resolve(host string) (netip.Addr, error) {
	f, ok := readGuest(g.m, "/etc/hosts")
	if ok {
		sc := bufio.NewScanner(bytes.NewReader(f.data()))
		for sc.Scan() {
			fields := strings.Fields(strings.SplitN(sc.Text(), "#", 2)[0])
			if len(fields) >= 2 && slices.Contains(fields[1:], host) {
				return netip.ParseAddr(fields[0])
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("lookup %s: no such host", host)
}

// listens says whether o's workload is a bb-egress serve on port.
func listens(o *machine, port string) bool {
	if len(o.Cmd) < 2 || path.Base(o.Cmd[0]) != "bb-egress" || o.Cmd[1] != "serve" {
		return false
	}
	for i, a := range o.Cmd {
		if a == "--listen" && i+1 < len(o.Cmd) {
			_, p, err := net.SplitHostPort(o.Cmd[i+1])
			return err == nil && p == port
		}
	}
	return false
}

// attachment is a terminal joined to the model's holder. It reads the
// terminal with the state unlocked: Ctrl-P Ctrl-Q detaches (exit 0),
// a line "exit N" ends the agent with status N, EOF detaches, and any
// other line is echoed as the agent's output.
type attachment struct {
	machine, socket string
}

func (g *guest) startAttach(argv []string) (*attachment, error) {
	socket, _, _ := helperArgs(argv)
	h := g.m.Holder
	if h == nil || !h.Running || h.Socket != socket {
		fmt.Fprintf(g.stderr, "bb-egress guest join: %s: no agent is held there\n", socket)
		return nil, exitCode(1)
	}
	if !h.Started {
		h.Started = true
	}
	fmt.Fprintf(g.stdout, "[agent %s]\r\n", strings.Join(h.Command, " "))
	return &attachment{machine: g.m.Name, socket: socket}, nil
}

func (a *attachment) run(dir string, stdin io.Reader, stdout io.Writer) error {
	r := bufio.NewReader(stdin)
	var line []byte
	var prev byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil // the terminal went away: detached
		}
		if prev == 0x10 && b == 0x11 {
			return nil
		}
		prev = b
		if b == 0x10 {
			continue
		}
		if b != '\r' && b != '\n' {
			line = append(line, b)
			continue
		}
		text := strings.TrimSpace(string(line))
		line = line[:0]
		if n, ok := strings.CutPrefix(text, "exit "); ok {
			code, err := strconv.Atoi(n)
			if err != nil {
				continue
			}
			return withState(dir, func(st *state) error {
				if m := st.Machines[a.machine]; m != nil && m.Holder != nil && m.Holder.Socket == a.socket {
					m.Holder.Running = false
					m.Holder.ExitCode = &code
				}
				return exitCode(code)
			})
		}
		if text != "" {
			fmt.Fprintf(stdout, "%s\r\n", text)
		}
	}
}
