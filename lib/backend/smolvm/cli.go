package smolvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/plan"
)

// ToolEnv names the variable that says where smolvm is, when it is not
// "smolvm" on PATH (tests point it at the fake).
const ToolEnv = "BB_SMOLVM"

// MinVersion is the oldest smolvm that can give a bottle its isolation
// (see the package comment): named networks came in 1.8.3, machine cp
// --uid/--gid/--mode in 1.9.0.
var MinVersion = version{1, 9, 0}

// tool runs the smolvm command line.
type tool struct {
	path string
	// env is every call's environment (smolvmEnv).
	env []string
	// v is the installed smolvm's version, asked once.
	v *versionOnce
}

type versionOnce struct {
	once    sync.Once
	version version
	err     error
}

// guestHostService is the one smolvm variable that widens what a guest
// reaches: a host loopback port through its gateway
// (src/network/launch.rs guest_host_service).
const guestHostService = "SMOLVM_GUEST_HOST_SERVICE"

// smolvmEnv is the part of the person's environment smolvm gets: what it
// needs to find itself, its state and the terminal (PATH, HOME, the XDG
// folders, locale, TERM, SMOLVM_* settings), and nothing else — no token,
// and no variable a plan reads one from, reaches smolvm or the VM
// processes it leaves running — less guestHostService.
func smolvmEnv(environ []string, p *plan.Plan) []string {
	keep := func(k string) bool {
		switch k {
		case "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TERM", "COLORTERM", "LANG", "TZ", "RUST_LOG", "RUST_BACKTRACE":
			return true
		case guestHostService:
			return false
		}
		return strings.HasPrefix(k, "LC_") || strings.HasPrefix(k, "XDG_") || strings.HasPrefix(k, "SMOLVM_")
	}
	drop := map[string]bool{}
	if p != nil {
		for _, t := range p.Egress.Tokens {
			drop[t.Env] = true
		}
	}
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if keep(k) && !drop[k] {
			out = append(out, kv)
		}
	}
	return out
}

// command is smolvm with args, in the tool's environment plus extra.
func (t *tool) command(ctx context.Context, extra []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, t.path, args...)
	cmd.Env = append(slices.Clone(t.env), extra...)
	return cmd
}

// runError is a smolvm call that failed: its command line (never its
// environment) and the end of what it said on stderr.
type runError struct {
	args   []string
	code   int
	stderr string
}

func (e *runError) Error() string {
	msg := "smolvm " + strings.Join(e.args, " ")
	if e.code >= 0 {
		msg += ": exit status " + strconv.Itoa(e.code)
	}
	if e.stderr != "" {
		msg += ": " + e.stderr
	}
	return msg
}

// output runs smolvm with args and returns its stdout. A failure is a
// *runError, marked a backend failure (exit 3).
//
// A `machine exec` whose command was killed (137) before it printed
// anything is run once more: smolvm can answer so for a command that was
// killed as the VM woke.
func (t *tool) output(ctx context.Context, extra []string, args ...string) ([]byte, error) {
	for try := 0; ; try++ {
		cmd := t.command(ctx, extra, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if try == 0 && killedAsItWoke(args, cmd, stdout.Len()+stderr.Len()) {
			continue
		}
		return stdout.Bytes(), t.check(ctx, err, args, stderr.String())
	}
}

// killedAsItWoke says whether a finished call was a `machine exec` whose
// command was killed (status 137) before it said anything.
func killedAsItWoke(args []string, cmd *exec.Cmd, said int) bool {
	return len(args) > 1 && args[0] == "machine" && args[1] == "exec" && cmd.ProcessState != nil &&
		cmd.ProcessState.ExitCode() == 137 && said == 0
}

// run is output for a call whose stdout is not wanted.
func (t *tool) run(ctx context.Context, extra []string, args ...string) error {
	_, err := t.output(ctx, extra, args...)
	return err
}

func (t *tool) check(ctx context.Context, err error, args []string, stderr string) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		stderr = err.Error()
	}
	msg := strings.TrimSpace(stderr)
	msg = strings.TrimPrefix(msg, "Error: ")
	if len(msg) > 2000 {
		msg = "..." + msg[len(msg)-2000:]
	}
	return exit.Backend(&runError{args: args, code: code, stderr: msg})
}

// version is a smolvm release.
type version [3]int

func (v version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

func (v version) less(o version) bool {
	for i := range v {
		if v[i] != o[i] {
			return v[i] < o[i]
		}
	}
	return false
}

var versionRE = regexp.MustCompile(`^smolvm v?(\d+)\.(\d+)\.(\d+)`)

// parseVersion reads `smolvm --version`: clap's "smolvm 1.9.3".
func parseVersion(out string) (version, error) {
	m := versionRE.FindStringSubmatch(strings.TrimSpace(out))
	if m == nil {
		return version{}, fmt.Errorf("smolvm --version said %q, not a version", strings.TrimSpace(out))
	}
	var v version
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	return v, nil
}

// checkVersion fails, exit 3 naming the release bb needs, unless the
// installed smolvm can isolate a bottle.
func (t *tool) checkVersion(ctx context.Context) error {
	t.v.once.Do(func() {
		out, err := t.output(ctx, nil, "--version")
		if err != nil {
			t.v.err = err
			return
		}
		t.v.version, t.v.err = parseVersion(string(out))
	})
	if t.v.err != nil {
		return exit.Backend(fmt.Errorf("asking smolvm its version: %w", t.v.err))
	}
	if t.v.version.less(MinVersion) {
		return exit.Backend(fmt.Errorf("smolvm %s cannot isolate a bottle: bb needs smolvm %s or later, "+
			"whose named networks (--network, 1.8.3) are the agent's only way to its sidecar and whose machine cp "+
			"--uid/--gid (1.9.0) give the agent its files", t.v.version, MinVersion),
			"upgrade smolvm: curl -sSL https://smolmachines.com/install.sh | bash")
	}
	return nil
}

// labelArgs are --label flags for labels, sorted.
func labelArgs(labels map[string]string) []string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var args []string
	for _, k := range keys {
		args = append(args, "--label", k+"="+labels[k])
	}
	return args
}

// checkName refuses a machine name smolvm would (src/data/mod.rs
// validate_vm_name), before anything is made.
func checkName(what, n string) error {
	bad := ""
	switch {
	case n == "" || len(n) > 128:
		bad = "1 to 128 characters"
	case strings.HasSuffix(n, "-") || strings.Contains(n, "--"):
		bad = "no trailing or doubled '-'"
	case !isAlnum(n[0]):
		bad = "a letter or digit first"
	}
	for i := 0; bad == "" && i < len(n); i++ {
		if c := n[i]; !isAlnum(c) && c != '-' && c != '_' {
			bad = "letters, digits, '-' and '_' only"
		}
	}
	if bad != "" {
		return exit.Usagef("plan %s %q is not a smolvm machine name: want %s", what, n, bad)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
