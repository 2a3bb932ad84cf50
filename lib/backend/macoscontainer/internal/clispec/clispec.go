// Package clispec holds the part of Apple's container command line that bb
// runs, as apple/container documents it at release 1.2.2: every command and
// every option bb passes, each with the file, section and words of the
// document that says so, and a parser that reads a command line the way the
// CLI's argument parser (swift-argument-parser) does.
//
// The backend's tests check every command line bb runs against it, and the
// fake container CLI they build parses its arguments with it, so a flag bb
// passes that the documents do not have fails a test instead of a person's
// launch.
package clispec

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The documents the table follows.
const (
	Repo      = "apple/container"
	Release   = "1.2.2"
	Reference = "docs/command-reference.md"
	HowTo     = "docs/how-to.md"
)

// Source is where a command or an option is documented: a file of Repo at
// Release, its section, and what it says there.
type Source struct {
	File    string
	Section string
	Says    string
}

func (s Source) String() string {
	return fmt.Sprintf("%s %s@%s, %s: %q", Repo, s.File, Release, s.Section, s.Says)
}

// Option is one option of a command.
type Option struct {
	// Names are its spellings, the long one first ("--name", "-n").
	Names []string
	// Value names its argument ("<name>"); empty for a flag.
	Value string
	// Check refuses a value the documents do not allow (nil: any).
	Check func(string) error
	Source
}

// Command is one command of the CLI.
type Command struct {
	// Path is the words after "container": {"image", "list"}.
	Path []string
	// Args name the positional arguments. A name ending in "..." takes the
	// rest (one or more unless it starts with "["); one in brackets is
	// optional. Rest names a passthrough: once reached, everything after it
	// is an argument, options included.
	Args    []string
	Rest    bool
	Options []Option
	Source
}

// Name is the command as typed: "image list".
func (c *Command) Name() string { return strings.Join(c.Path, " ") }

// Option returns the command's option spelled name, or nil.
func (c *Command) Option(name string) *Option {
	for i := range c.Options {
		if slices.Contains(c.Options[i].Names, name) {
			return &c.Options[i]
		}
	}
	return nil
}

func ref(section, says string) Source { return Source{File: Reference, Section: section, Says: says} }

func flag(says, section string, names ...string) Option {
	return Option{Names: names, Source: ref(section, says)}
}

func opt(value, says, section string, check func(string) error, names ...string) Option {
	return Option{Names: names, Value: value, Check: check, Source: ref(section, says)}
}

// The sections of Reference.
const (
	secVersion      = "container system version"
	secBuild        = "container build"
	secImageList    = "container image list (ls)"
	secImageTag     = "container image tag"
	secImageDelete  = "container image delete (rm)"
	secCreate       = "container create"
	secRun          = "container run"
	secStart        = "container start"
	secStop         = "container stop"
	secKill         = "container kill"
	secDelete       = "container delete (rm)"
	secList         = "container list (ls)"
	secExec         = "container exec"
	secExport       = "container export"
	secLogs         = "container logs"
	secVolumeCreate = "container volume create"
	secVolumeDelete = "container volume delete (rm)"
	secVolumeList   = "container volume list (ls)"
)

// Commands are the commands bb runs, with the options it passes.
var Commands = []Command{
	{
		Path: []string{"system", "version"}, Source: ref(secVersion, "Shows version information for the CLI and, if available, the API server."),
		Options: []Option{
			opt("<format>", "Format of the output (values: json, table, yaml, toml; default: table)", secVersion, oneOf("json", "table", "yaml", "toml"), "--format"),
		},
	},
	{
		Path: []string{"build"}, Args: []string{"[<context-dir>]"},
		Source: ref(secBuild, "container build [<options>] [<context-dir>]"),
		Options: []Option{
			opt("<path>", "Path to Dockerfile", secBuild, nonEmpty, "--file", "-f"),
			opt("<name>", "Name for the built image (can be specified multiple times)", secBuild, nonEmpty, "--tag", "-t"),
			opt("<key=val>", "Set build-time variables", secBuild, keyValue, "--build-arg"),
			opt("<key=val>", "Set a label", secBuild, keyValue, "--label", "-l"),
			opt("<type>", "Progress type (format: auto|plain|tty) (default: auto)", secBuild, oneOf("auto", "plain", "tty"), "--progress"),
			flag("Do not use cache", secBuild, "--no-cache"),
		},
	},
	{
		Path: []string{"image", "list"}, Source: ref(secImageList, "container image list [--format <format>] [--quiet] [--verbose] [--debug]"),
		Options: []Option{
			opt("<format>", "Format of the output (values: json, table, yaml, toml; default: table)", secImageList, oneOf("json", "table", "yaml", "toml"), "--format"),
		},
	},
	{
		Path: []string{"image", "tag"}, Args: []string{"<source>", "<target>"},
		Source: ref(secImageTag, "container image tag <source> <target> [--debug]"),
	},
	{
		Path: []string{"image", "delete"}, Args: []string{"<images>..."},
		Source: ref(secImageDelete, "container image delete [--all] [--force] [--debug] [<images> ...]"),
		Options: []Option{
			flag("Ignore errors for images that are not found", secImageDelete, "--force", "-f"),
		},
	},
	{
		Path: []string{"create"}, Args: []string{"<image>", "[<arguments>...]"}, Rest: true,
		Source: ref(secCreate, "container create [<options>] <image> [<arguments> ...]"),
		Options: []Option{
			opt("<name>", "Use the specified name as the container ID", secCreate, containerName, "--name"),
			opt("<label>", "Add a key=value label to the container", secCreate, keyValue, "--label", "-l"),
			opt("<user>", "Set the user for the process (format: name|uid[:gid])", secCreate, user, "--user", "-u"),
			opt("<dir>", "Set the initial working directory inside the container", secCreate, absPath, "--workdir", "-w", "--cwd"),
			opt("<env>", "Set environment variables (format: key=value, or just key to inherit from host)", secCreate, env, "--env", "-e"),
			opt("<env-file>", "Read in a file of environment variables (key=value format, ignores # comments and blank lines)", secCreate, absPath, "--env-file"),
			opt("<cmd>", "Override the entrypoint of the image", secCreate, absPath, "--entrypoint"),
			opt("<cpus>", "Number of CPUs to allocate to the container", secCreate, positiveInt, "--cpus", "-c"),
			opt("<memory>", "Amount of memory (1MiByte granularity), with optional K, M, G, T, or P suffix", secCreate, memory, "--memory", "-m"),
			opt("<cap>", "Add a Linux capability (e.g. `CAP_NET_RAW`, `NET_RAW`, or `ALL`)", secCreate, capability, "--cap-add"),
			opt("<cap>", "Drop a Linux capability (e.g. `CAP_NET_RAW`, `NET_RAW`, or `ALL`)", secCreate, capability, "--cap-drop"),
			flag("Run an init process inside the container that forwards signals and reaps processes", secCreate, "--init"),
			{
				Names: []string{"--network"}, Value: "<network>", Check: network,
				// The reference documents the flag; the name "none" is
				// the source's (NetworkClient.noNetworkName, apple/container
				// #739, in every release since 0.6.0).
				Source: Source{File: "Sources/Services/ContainerAPIService/Client/Utility.swift", Section: "containerConfigFromFlags",
					Says: `if management.networks.contains(NetworkClient.noNetworkName) { ... config.networks = [] } (noNetworkName = "none"); ` +
						Reference + ", " + secCreate + ": Attach the container to a network (format: `<name>[,mac=XX:XX:XX:XX:XX:XX][,mtu=VALUE]`)"},
			},
			flag("Do not configure DNS in the container", secCreate, "--no-dns"),
			opt("<volume>", "Bind mount a volume into the container", secCreate, volume, "--volume", "-v"),
			opt("<spec>", "Publish a socket from container to host (format: host_path:container_path)", secCreate, publishSocket, "--publish-socket"),
			opt("<limit>", "Set resource limits (format: `<type>=<soft>[:<hard>]`)", secCreate, ulimit, "--ulimit"),
		},
	},
	{
		Path: []string{"run"}, Args: []string{"<image>", "[<arguments>...]"}, Rest: true,
		Source: ref(secRun, "container run [<options>] <image> [<arguments> ...]"),
		Options: []Option{
			flag("Remove the container after it stops", secRun, "--rm", "--remove"),
			opt("<label>", "Add a key=value label to the container", secRun, keyValue, "--label", "-l"),
			opt("<user>", "Set the user for the process (format: name|uid[:gid])", secRun, user, "--user", "-u"),
			opt("<cmd>", "Override the entrypoint of the image", secRun, absPath, "--entrypoint"),
			opt("<cpus>", "Number of CPUs to allocate to the container", secRun, positiveInt, "--cpus", "-c"),
			opt("<memory>", "Amount of memory (1MiByte granularity), with optional K, M, G, T, or P suffix", secRun, memory, "--memory", "-m"),
			opt("<cap>", "Drop a Linux capability (e.g. `CAP_NET_RAW`, `NET_RAW`, or `ALL`)", secRun, capability, "--cap-drop"),
			{Names: []string{"--network"}, Value: "<network>", Check: network,
				Source: Source{File: "Sources/Services/ContainerAPIService/Client/Utility.swift", Section: "containerConfigFromFlags",
					Says: `(noNetworkName = "none"); ` + Reference + ", " + secRun + ": Attach the container to a network"}},
			flag("Do not configure DNS in the container", secRun, "--no-dns"),
			opt("<volume>", "Bind mount a volume into the container", secRun, volume, "--volume", "-v"),
		},
	},
	{
		Path: []string{"start"}, Args: []string{"<container-id>"},
		Source: ref(secStart, "container start [--attach] [--interactive] [--debug] <container-id>"),
	},
	{
		Path: []string{"stop"}, Args: []string{"<container-ids>..."},
		Source: ref(secStop, "container stop [--all] [--signal <signal>] [--time <time>] [--debug] [<container-ids> ...]"),
		Options: []Option{
			opt("<time>", "Seconds to wait before killing the containers (default: 5)", secStop, nonNegativeInt, "--time", "-t"),
		},
	},
	{
		Path: []string{"kill"}, Args: []string{"<container-ids>..."},
		Source: ref(secKill, "container kill [--all] [--signal <signal>] [--debug] [<container-ids> ...]"),
		Options: []Option{
			opt("<signal>", "Signal to send to the container(s) (default: KILL)", secKill, signal, "--signal", "-s"),
		},
	},
	{
		Path: []string{"delete"}, Args: []string{"<container-ids>..."},
		Source: ref(secDelete, "container delete [--all] [--force] [--debug] [<container-ids> ...]"),
		Options: []Option{
			flag("Delete containers even if they are running", secDelete, "--force", "-f"),
		},
	},
	{
		Path: []string{"list"}, Source: ref(secList, "container list [--all] [--format <format>] [--quiet] [--debug]"),
		Options: []Option{
			flag("Include containers that are not running", secList, "--all", "-a"),
			opt("<format>", "Format of the output (values: json, table, yaml, toml; default: table)", secList, oneOf("json", "table", "yaml", "toml"), "--format"),
		},
	},
	{
		Path: []string{"exec"}, Args: []string{"<container-id>", "<arguments>..."}, Rest: true,
		Source: ref(secExec, "container exec [--detach] [--env <env> ...] [--env-file <env-file> ...] [--gid <gid>] [--interactive] [--tty] [--user <user>] [--uid <uid>] [--workdir <dir>] [--debug] <container-id> <arguments> ..."),
		Options: []Option{
			flag("Keep the standard input open even if not attached", secExec, "--interactive", "-i"),
			flag("Open a TTY with the process", secExec, "--tty", "-t"),
			opt("<user>", "Set the user for the process (format: name|uid[:gid])", secExec, user, "--user", "-u"),
			opt("<dir>", "Set the initial working directory inside the container", secExec, absPath, "--workdir", "-w", "--cwd"),
		},
	},
	{
		Path: []string{"export"}, Args: []string{"<container-id>"},
		Source: ref(secExport, "Exports a container's filesystem as a tar archive. For running containers, export automatically takes a runtime snapshot to preserve consistency."),
		Options: []Option{
			opt("<output>", "Pathname for the saved container filesystem (defaults to stdout)", secExport, absPath, "--output", "-o"),
		},
	},
	{
		Path: []string{"logs"}, Args: []string{"<container-id>"},
		Source: ref(secLogs, "container logs [--boot] [--follow] [-n <n>] [--debug] <container-id>"),
		Options: []Option{
			opt("<n>", "Number of lines to show from the end of the logs. If not provided this will print all of the logs", secLogs, nonNegativeInt, "-n"),
		},
	},
	{
		Path: []string{"volume", "create"}, Args: []string{"<name>"},
		Source: ref(secVolumeCreate, "container volume create [--label <label> ...] [--opt <opt> ...] [-s <s>] [--debug] <name>"),
		Options: []Option{
			opt("<label>", "Set metadata for a volume", secVolumeCreate, keyValue, "--label"),
		},
	},
	{
		Path: []string{"volume", "delete"}, Args: []string{"<names>..."},
		Source: ref(secVolumeDelete, "container volume delete [--all] [--debug] [<names> ...]"),
	},
	{
		Path: []string{"volume", "list"}, Source: ref(secVolumeList, "container volume list [--format <format>] [--quiet] [--debug]"),
		Options: []Option{
			opt("<format>", "Format of the output (values: json, table, yaml, toml; default: table)", secVolumeList, oneOf("json", "table", "yaml", "toml"), "--format"),
		},
	},
}

// Opt is one option as given: its long name and its value ("" for a flag).
type Opt struct {
	Name  string
	Value string
}

// Line is a command line as Parse read it.
type Line struct {
	Command *Command
	Opts    []Opt
	Args    []string
}

// Values returns the values given for the option whose long name is name,
// in order.
func (l *Line) Values(name string) []string {
	var out []string
	for _, o := range l.Opts {
		if o.Name == name {
			out = append(out, o.Value)
		}
	}
	return out
}

// Value returns the last value given for name, as the CLI keeps the last
// of a repeated single option.
func (l *Line) Value(name string) (string, bool) {
	v := l.Values(name)
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// Has says whether the flag or option name was given.
func (l *Line) Has(name string) bool {
	_, ok := l.Value(name)
	return ok
}

// UsageError is a command line the table refuses; the real CLI exits 64
// (EX_USAGE) for one.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// Find returns the command whose path starts argv, and the rest of argv.
func Find(argv []string) (*Command, []string, error) {
	var best *Command
	for i := range Commands {
		c := &Commands[i]
		if len(argv) >= len(c.Path) && slices.Equal(argv[:len(c.Path)], c.Path) && (best == nil || len(c.Path) > len(best.Path)) {
			best = c
		}
	}
	if best == nil {
		return nil, nil, usagef("no documented command in %q", strings.Join(argv, " "))
	}
	return best, argv[len(best.Path):], nil
}

// Parse reads argv (without the tool's name) as the CLI would: the command,
// then its options (long or short, "--opt value" or "--opt=value") and
// positional arguments, options mixed with positionals until a passthrough
// argument starts or "--" ends them. Every option must be in the table and
// its value pass the table's check.
func Parse(argv []string) (*Line, error) {
	c, rest, err := Find(argv)
	if err != nil {
		return nil, err
	}
	l := &Line{Command: c}
	var pos []string
	required := 0
	for _, a := range c.Args {
		if !strings.HasPrefix(a, "[") {
			required++
		}
	}
	fixed := len(c.Args)
	if c.Rest || (len(c.Args) > 0 && strings.HasSuffix(strings.Trim(c.Args[len(c.Args)-1], "[]"), "...")) {
		fixed = len(c.Args) - 1
	}
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if c.Rest && len(pos) >= fixed && fixed > 0 {
			pos = append(pos, rest[i:]...)
			break
		}
		if a == "--" {
			pos = append(pos, rest[i+1:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' {
			name, value, hasValue := strings.Cut(a, "=")
			o := c.Option(name)
			if o == nil {
				return nil, usagef("container %s: unknown option '%s'", c.Name(), name)
			}
			long := o.Names[0]
			if o.Value == "" {
				if hasValue {
					return nil, usagef("container %s: %s takes no value", c.Name(), name)
				}
				l.Opts = append(l.Opts, Opt{Name: long})
				continue
			}
			if !hasValue {
				if i+1 >= len(rest) {
					return nil, usagef("container %s: missing value for '%s %s'", c.Name(), name, o.Value)
				}
				i++
				value = rest[i]
			}
			if o.Check != nil {
				if err := o.Check(value); err != nil {
					return nil, usagef("container %s: %s %q: %v", c.Name(), name, value, err)
				}
			}
			l.Opts = append(l.Opts, Opt{Name: long, Value: value})
			continue
		}
		pos = append(pos, a)
	}
	if len(pos) < required {
		return nil, usagef("container %s: missing %s", c.Name(), strings.Join(c.Args[len(pos):required], " "))
	}
	if fixed == len(c.Args) && len(pos) > len(c.Args) {
		return nil, usagef("container %s: unexpected argument %q", c.Name(), pos[len(c.Args)])
	}
	l.Args = pos
	return l, nil
}

func oneOf(values ...string) func(string) error {
	return func(s string) error {
		if !slices.Contains(values, s) {
			return fmt.Errorf("want one of %s", strings.Join(values, ", "))
		}
		return nil
	}
}

func nonEmpty(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	return nil
}

func keyValue(s string) error {
	k, _, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want key=value")
	}
	return nil
}

func absPath(s string) error {
	if !strings.HasPrefix(s, "/") {
		return errors.New("want an absolute path")
	}
	return nil
}

// containerName is ManagedContainer.nameValid of
// Sources/ContainerResource/Container/ManagedContainer.swift.
var containerNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func containerName(s string) error {
	if len(s) > 63 || !containerNameRE.MatchString(s) {
		return errors.New("not a valid container ID (letters, digits, _ . -; at most 63)")
	}
	return nil
}

func user(s string) error {
	name, group, hasGroup := strings.Cut(s, ":")
	if name == "" || (hasGroup && group == "") {
		return errors.New("want name|uid[:gid]")
	}
	return nil
}

func env(s string) error {
	k, _, _ := strings.Cut(s, "=")
	if k == "" {
		return errors.New("want key=value or key")
	}
	return nil
}

func positiveInt(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return errors.New("want a whole number of at least 1")
	}
	return nil
}

func nonNegativeInt(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return errors.New("want a whole number")
	}
	return nil
}

// memory is Measurement.parse of
// Sources/ContainerPersistence/Measurement+Parse.swift: a number and an
// optional unit, b, k, m, g, t or p, with an optional "b" or "ib" after it.
var memoryRE = regexp.MustCompile(`^[0-9.]+ *([bkmgtp]|[kmgtp]i?b)?$`)

func memory(s string) error {
	if !memoryRE.MatchString(strings.ToLower(strings.TrimSpace(s))) {
		return errors.New("want a size with an optional K, M, G, T or P suffix")
	}
	return nil
}

// capability: the names of CapabilityName (apple/containerization), with
// or without CAP_, any case, or ALL.
var capabilities = []string{"AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
	"LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST",
	"NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT",
	"SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME",
	"SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM"}

func capability(s string) error {
	u := strings.TrimPrefix(strings.ToUpper(s), "CAP_")
	if u == "ALL" || slices.Contains(capabilities, u) {
		return nil
	}
	return errors.New("not a Linux capability")
}

// network: "<name>[,mac=XX:XX:XX:XX:XX:XX][,mtu=VALUE]".
func network(s string) error {
	name, props, _ := strings.Cut(s, ",")
	if name == "" {
		return errors.New("want <name>[,mac=...][,mtu=...]")
	}
	for p := range strings.SplitSeq(props, ",") {
		if p == "" {
			continue
		}
		if k, _, _ := strings.Cut(p, "="); k != "mac" && k != "mtu" {
			return fmt.Errorf("unknown network property %q", k)
		}
	}
	return nil
}

// volume is Parser.volume of
// Sources/Services/ContainerAPIService/Client/Parser.swift: "/dst" (an
// anonymous volume), or "src:dst[:opts]" where a src with a "/" is a host
// path (it must be absolute) and any other is a named volume.
func volume(s string) error {
	parts := strings.Split(strings.TrimLeft(s, ":"), ":")
	switch len(parts) {
	case 2, 3:
		if parts[0] == "" || parts[1] == "" {
			return errors.New("want source:destination[:options]")
		}
		if strings.Contains(parts[0], "/") && !strings.HasPrefix(parts[0], "/") {
			return errors.New("a host path must be absolute")
		}
		if !strings.HasPrefix(parts[1], "/") {
			return errors.New("the destination must be an absolute path")
		}
		if len(parts) == 3 {
			for o := range strings.SplitSeq(parts[2], ",") {
				if o != "ro" && o != "rw" {
					return fmt.Errorf("unknown volume option %q", o)
				}
			}
		}
		return nil
	default:
		return errors.New("want source:destination[:options]")
	}
}

func publishSocket(s string) error {
	host, guest, ok := strings.Cut(s, ":")
	if !ok || !strings.HasPrefix(host, "/") || !strings.HasPrefix(guest, "/") {
		return errors.New("want host_path:container_path, both absolute")
	}
	return nil
}

// ulimit is Parser.rlimits: "<type>=<soft>[:<hard>]".
var ulimitRE = regexp.MustCompile(`^(core|cpu|data|fsize|locks|memlock|msgqueue|nice|nofile|nproc|rss|rtprio|rttime|sigpending|stack)=([0-9]+|unlimited)(:([0-9]+|unlimited))?$`)

func ulimit(s string) error {
	if !ulimitRE.MatchString(s) {
		return errors.New("want <type>=<soft>[:<hard>]")
	}
	return nil
}

func signal(s string) error {
	u := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if _, err := strconv.Atoi(s); err == nil {
		return nil
	}
	switch u {
	case "HUP", "INT", "QUIT", "KILL", "TERM", "USR1", "USR2", "STOP", "CONT", "WINCH":
		return nil
	}
	return errors.New("not a signal name")
}
