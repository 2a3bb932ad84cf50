// Package syntax holds the part of smolvm's command line that bb runs, as
// smolvm documents it: every subcommand and flag bb passes, with the file of
// smol-machines/smolvm at release Release that defines it. Parse checks an
// argument vector against it the way smolvm's clap definitions would, and
// refuses any flag not listed, so a command line bb builds either matches the
// documented syntax or fails in tests. The fake smolvm the tests run parses
// with it too.
package syntax

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Repo and Release are the repository and the release tag whose sources the
// table follows (tag commit 21b51875, 2026-08-21).
const (
	Repo    = "smol-machines/smolvm"
	Release = "v1.9.3"
)

// Flag is one option of a subcommand.
type Flag struct {
	Long  string // "--name"
	Short string // "-n", or "" for none
	// Value says the flag takes a value (clap: anything but a bool field).
	Value bool
	// Repeat says it may be given more than once (a Vec field).
	Repeat bool
	// Conflicts are other flags' Long names it cannot be used with.
	Conflicts []string
	// Since is the first release that has it, where later than the
	// subcommand's.
	Since string
	// Cite is the definition at Release: file and field.
	Cite string
}

// Trailing says what may follow the options.
type Trailing int

const (
	// NoTrailing: nothing after the options.
	NoTrailing Trailing = iota
	// AfterDashDash: an optional command, only after "--" (clap last = true).
	AfterDashDash
	// Required: a command, after "--" or at the first non-option word
	// (clap trailing_var_arg = true, required = true).
	Required
)

// Command is one subcommand.
type Command struct {
	// Path is the words that name it: "machine", "create".
	Path []string
	// Aliases are other names of its last word (clap visible_alias).
	Aliases []string
	Flags   []Flag
	// Positionals is how many plain arguments it takes (machine cp: SRC
	// DST), all required.
	Positionals int
	Trailing    Trailing
	// Required are flags (Long) that must be given.
	Required []string
	// OneOf: at least one of these flags must be given.
	OneOf []string
	Cite  string
}

// Name is the command's words, as in "machine create".
func (c *Command) Name() string { return strings.Join(c.Path, " ") }

// Commands are the subcommands bb runs, and nothing else.
var Commands = []*Command{
	{
		Path: []string{"machine", "create"},
		Cite: "src/cli/machine.rs CreateCmd",
		Flags: []Flag{
			{Long: "--name", Short: "-n", Value: true, Cite: "src/cli/machine.rs CreateCmd.name"},
			{Long: "--label", Value: true, Repeat: true, Since: "v1.8.0", Cite: "src/cli/machine.rs CreateCmd.labels"},
			{Long: "--image", Short: "-I", Value: true, Conflicts: []string{"--from"}, Cite: "src/cli/machine.rs CreateCmd.image"},
			{Long: "--from", Value: true, Conflicts: []string{"--image"}, Cite: "src/cli/machine.rs CreateCmd.from"},
			{Long: "--cpus", Value: true, Cite: "src/cli/machine.rs CreateCmd.cpus"},
			{Long: "--mem", Value: true, Cite: "src/cli/machine.rs CreateCmd.mem"},
			{Long: "--volume", Short: "-v", Value: true, Repeat: true, Cite: "src/cli/machine.rs CreateCmd.volume"},
			{Long: "--net", Cite: "src/cli/machine.rs CreateCmd.net"},
			{Long: "--network", Value: true, Since: "v1.8.3", Cite: "src/cli/machine.rs CreateCmd.network_name"},
			{Long: "--allow-host", Value: true, Repeat: true, Cite: "src/cli/machine.rs CreateCmd.allow_host"},
			{Long: "--dns", Value: true, Cite: "src/cli/machine.rs CreateCmd.dns"},
			{Long: "--env", Short: "-e", Value: true, Repeat: true, Cite: "src/cli/machine.rs CreateCmd.env"},
			{Long: "--workdir", Short: "-w", Value: true, Cite: "src/cli/machine.rs CreateCmd.workdir"},
			{Long: "--secret-env", Value: true, Repeat: true, Cite: "src/cli/machine.rs CreateCmd.secret_env"},
		},
		Trailing: AfterDashDash,
	},
	{
		Path:  []string{"machine", "start"},
		Cite:  "src/cli/machine.rs StartCmd",
		Flags: []Flag{{Long: "--name", Short: "-n", Value: true, Cite: "src/cli/machine.rs StartCmd.name"}},
	},
	{
		Path:  []string{"machine", "stop"},
		Cite:  "src/cli/machine.rs StopCmd",
		Flags: []Flag{{Long: "--name", Short: "-n", Value: true, Cite: "src/cli/machine.rs StopCmd.name"}},
	},
	{
		Path:    []string{"machine", "delete"},
		Aliases: []string{"rm"},
		Cite:    "src/cli/machine.rs DeleteCmd",
		Flags: []Flag{
			{Long: "--name", Short: "-n", Value: true, Cite: "src/cli/machine.rs DeleteCmd.name"},
			{Long: "--force", Short: "-f", Cite: "src/cli/machine.rs DeleteCmd.force"},
		},
		Required: []string{"--name"},
	},
	{
		Path:    []string{"machine", "ls"},
		Aliases: []string{"list"},
		Cite:    "src/cli/machine.rs LsCmd; the JSON is src/cli/vm_common.rs machine_status_json",
		Flags:   []Flag{{Long: "--json", Cite: "src/cli/machine.rs LsCmd.json"}},
	},
	{
		Path: []string{"machine", "exec"},
		Cite: "src/cli/machine.rs ExecCmd",
		Flags: []Flag{
			// ExecCmd.name is #[arg(long)]: no -n.
			{Long: "--name", Value: true, Cite: "src/cli/machine.rs ExecCmd.name"},
			{Long: "--workdir", Short: "-w", Value: true, Cite: "src/cli/machine.rs ExecCmd.workdir"},
			{Long: "--env", Short: "-e", Value: true, Repeat: true, Cite: "src/cli/machine.rs ExecCmd.env"},
			{Long: "--interactive", Short: "-i", Conflicts: []string{"--detach"}, Cite: "src/cli/machine.rs ExecCmd.interactive"},
			{Long: "--tty", Short: "-t", Conflicts: []string{"--detach"}, Cite: "src/cli/machine.rs ExecCmd.tty"},
			{Long: "--stream", Conflicts: []string{"--detach"}, Cite: "src/cli/machine.rs ExecCmd.stream"},
			{Long: "--detach", Short: "-d", Conflicts: []string{"--interactive", "--tty", "--stream"}, Cite: "src/cli/machine.rs ExecCmd.detach"},
		},
		Trailing: Required,
	},
	{
		Path:        []string{"machine", "cp"},
		Cite:        "src/cli/machine.rs CpCmd",
		Positionals: 2,
		Flags: []Flag{
			{Long: "--mode", Value: true, Since: "v1.9.0", Cite: "src/cli/machine.rs CpCmd.mode"},
			{Long: "--uid", Value: true, Since: "v1.9.0", Cite: "src/cli/machine.rs CpCmd.uid"},
			{Long: "--gid", Value: true, Since: "v1.9.0", Cite: "src/cli/machine.rs CpCmd.gid"},
		},
	},
	{
		Path: []string{"pack", "create"},
		Cite: "src/cli/pack.rs PackCreateCmd",
		Flags: []Flag{
			{Long: "--from-vm", Value: true, Cite: "src/cli/pack.rs PackCreateCmd.from_vm"},
			{Long: "--output", Short: "-o", Value: true, Cite: "src/cli/pack.rs PackCreateCmd.output"},
		},
		Required: []string{"--output"},
		// clap: image is required_unless_present_any = [from_vm, smolfile];
		// bb packs from a VM only.
		OneOf: []string{"--from-vm"},
	},
}

// Version is `smolvm --version` (clap's #[command(version)] on Cli in
// src/main.rs prints "smolvm <Cargo.toml version>").
var Version = &Command{Path: []string{"--version"}, Cite: "src/main.rs Cli #[command(version)]"}

// Invocation is a parsed command line.
type Invocation struct {
	Cmd *Command
	// Values holds each value flag's values by Long name, in order.
	Values map[string][]string
	// Bools holds the bool flags given, by Long name.
	Bools map[string]bool
	// Positionals are the plain arguments; Trailing the words of the
	// trailing command.
	Positionals []string
	Trailing    []string
}

// Value is the flag's last value, "" when absent.
func (in *Invocation) Value(long string) string {
	v := in.Values[long]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// Has says whether the flag was given.
func (in *Invocation) Has(long string) bool { return in.Bools[long] || len(in.Values[long]) > 0 }

// ErrUsage is matched by every error Parse returns: clap's exit 2.
var ErrUsage = errors.New("usage")

type usageError struct{ msg string }

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == ErrUsage }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// Find returns the command args (after the program name) start with, and the
// words after its name.
func Find(args []string) (*Command, []string, error) {
	if len(args) == 1 && args[0] == "--version" {
		return Version, nil, nil
	}
	for _, c := range Commands {
		if len(args) < len(c.Path) {
			continue
		}
		ok := true
		for i, w := range c.Path {
			last := i == len(c.Path)-1
			if args[i] != w && !(last && slices.Contains(c.Aliases, args[i])) {
				ok = false
				break
			}
		}
		if ok {
			return c, args[len(c.Path):], nil
		}
	}
	return nil, nil, usagef("error: unrecognized subcommand %q (not in the documented subset bb runs)", strings.Join(args[:min(2, len(args))], " "))
}

// Parse checks args (after the program name) against the table.
func Parse(args []string) (*Invocation, error) {
	c, rest, err := Find(args)
	if err != nil {
		return nil, err
	}
	in := &Invocation{Cmd: c, Values: map[string][]string{}, Bools: map[string]bool{}}
	flag := func(word string) *Flag {
		for i := range c.Flags {
			if f := &c.Flags[i]; f.Long == word || (f.Short != "" && f.Short == word) {
				return f
			}
		}
		return nil
	}
	set := func(f *Flag, value string, hasValue bool) error {
		if !f.Repeat && in.Has(f.Long) {
			return usagef("error: the argument '%s' cannot be used multiple times", f.Long)
		}
		if f.Value {
			if !hasValue {
				return usagef("error: a value is required for '%s' but none was supplied", f.Long)
			}
			in.Values[f.Long] = append(in.Values[f.Long], value)
			return nil
		}
		if hasValue {
			return usagef("error: unexpected value '%s' for '%s' found; no more were expected", value, f.Long)
		}
		in.Bools[f.Long] = true
		return nil
	}
	for i := 0; i < len(rest); i++ {
		w := rest[i]
		switch {
		case w == "--":
			if c.Trailing == NoTrailing {
				return nil, usagef("error: unexpected argument '--' found")
			}
			in.Trailing = rest[i+1:]
			i = len(rest)
		case strings.HasPrefix(w, "--"):
			name, value, hasValue := strings.Cut(w, "=")
			f := flag(name)
			if f == nil {
				return nil, usagef("error: unexpected argument '%s' found", name)
			}
			if f.Value && !hasValue {
				if i+1 >= len(rest) {
					return nil, usagef("error: a value is required for '%s' but none was supplied", f.Long)
				}
				i++
				value, hasValue = rest[i], true
			}
			if err := set(f, value, hasValue); err != nil {
				return nil, err
			}
		case strings.HasPrefix(w, "-") && len(w) > 1:
			// Short flags, bools combined (-it), the last may take a value
			// (-nNAME or -n NAME).
			for j := 1; j < len(w); j++ {
				f := flag("-" + w[j:j+1])
				if f == nil {
					return nil, usagef("error: unexpected argument '-%s' found", w[j:j+1])
				}
				if f.Value {
					value := w[j+1:]
					if value == "" {
						if i+1 >= len(rest) {
							return nil, usagef("error: a value is required for '%s' but none was supplied", f.Long)
						}
						i++
						value = rest[i]
					}
					if err := set(f, value, true); err != nil {
						return nil, err
					}
					break
				}
				if err := set(f, "", false); err != nil {
					return nil, err
				}
			}
		default:
			if len(in.Positionals) < c.Positionals {
				in.Positionals = append(in.Positionals, w)
				continue
			}
			if c.Trailing == Required {
				in.Trailing = rest[i:]
				i = len(rest)
				continue
			}
			return nil, usagef("error: unexpected argument '%s' found", w)
		}
	}
	if len(in.Positionals) < c.Positionals {
		return nil, usagef("error: %s takes %d arguments, got %d", c.Name(), c.Positionals, len(in.Positionals))
	}
	if c.Trailing == Required && len(in.Trailing) == 0 {
		return nil, usagef("error: the following required arguments were not provided: <COMMAND>...")
	}
	for _, r := range c.Required {
		if !in.Has(r) {
			return nil, usagef("error: the following required arguments were not provided: %s", r)
		}
	}
	if len(c.OneOf) > 0 && !slices.ContainsFunc(c.OneOf, in.Has) {
		return nil, usagef("error: one of %s is required", strings.Join(c.OneOf, ", "))
	}
	for _, f := range c.Flags {
		if !in.Has(f.Long) {
			continue
		}
		for _, o := range f.Conflicts {
			if in.Has(o) {
				return nil, usagef("error: the argument '%s' cannot be used with '%s'", f.Long, o)
			}
		}
	}
	return in, nil
}

// FlagOf returns the table's entry for a flag of c, by Long name.
func (c *Command) FlagOf(long string) (Flag, bool) {
	for _, f := range c.Flags {
		if f.Long == long {
			return f, true
		}
	}
	return Flag{}, false
}
