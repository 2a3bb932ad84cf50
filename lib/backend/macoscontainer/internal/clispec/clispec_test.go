package clispec

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Every command and option cites the document it follows, at the release
// the package names, with words that are in that document.
func TestEveryEntryCitesItsDocument(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Commands {
		if seen[c.Name()] {
			t.Errorf("container %s is in the table twice", c.Name())
		}
		seen[c.Name()] = true
		if c.File == "" || c.Section == "" || c.Says == "" {
			t.Errorf("container %s cites no document: %+v", c.Name(), c.Source)
		}
		for _, o := range c.Options {
			if len(o.Names) == 0 || !strings.HasPrefix(o.Names[0], "--") && o.Names[0] != "-n" {
				t.Errorf("container %s: option %v: the long name comes first", c.Name(), o.Names)
			}
			if o.File == "" || o.Section == "" || o.Says == "" {
				t.Errorf("container %s %s cites no document", c.Name(), o.Names[0])
			}
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		argv    []string
		command string
		opts    []Opt
		args    []string
		err     string
	}{
		{argv: []string{"list", "--all", "--format", "json"}, command: "list",
			opts: []Opt{{"--all", ""}, {"--format", "json"}}},
		{argv: []string{"list", "-a", "--format=json"}, command: "list",
			opts: []Opt{{"--all", ""}, {"--format", "json"}}},
		{argv: []string{"image", "list", "--format", "json"}, command: "image list", opts: []Opt{{"--format", "json"}}},
		{argv: []string{"create", "--name", "bot-bottle-x", "--network", "none", "img:1", "/bin/sh", "-c", "--name x"},
			command: "create", opts: []Opt{{"--name", "bot-bottle-x"}, {"--network", "none"}},
			args: []string{"img:1", "/bin/sh", "-c", "--name x"}},
		{argv: []string{"exec", "--user", "1000:1000", "c1", "ls", "-la"}, command: "exec",
			opts: []Opt{{"--user", "1000:1000"}}, args: []string{"c1", "ls", "-la"}},
		{argv: []string{"stop", "a", "b"}, command: "stop", args: []string{"a", "b"}},
		{argv: []string{"build", "-f", "/x/Dockerfile", "-t", "a:b", "--progress", "plain", "/x"}, command: "build",
			opts: []Opt{{"--file", "/x/Dockerfile"}, {"--tag", "a:b"}, {"--progress", "plain"}}, args: []string{"/x"}},
		{argv: []string{"kill", "--signal", "HUP", "c"}, command: "kill", opts: []Opt{{"--signal", "HUP"}}, args: []string{"c"}},

		{argv: []string{"list", "--format", "xml"}, err: `--format "xml": want one of json, table, yaml, toml`},
		{argv: []string{"list", "--pids-limit", "5"}, err: "unknown option '--pids-limit'"},
		{argv: []string{"create", "--security-opt", "no-new-privileges", "img"}, err: "unknown option '--security-opt'"},
		{argv: []string{"create", "--memory", "4 gigs", "img"}, err: "want a size"},
		{argv: []string{"create", "--cpus", "0.5", "img"}, err: "want a whole number"},
		{argv: []string{"create", "--volume", "rel/dir:/x", "img"}, err: "a host path must be absolute"},
		{argv: []string{"create", "--volume", "/a:/b:readonly", "img"}, err: `unknown volume option "readonly"`},
		{argv: []string{"create", "--name", "bad name", "img"}, err: "not a valid container ID"},
		{argv: []string{"create", "--cap-drop", "EVERYTHING", "img"}, err: "not a Linux capability"},
		{argv: []string{"create", "--ulimit", "pids=5", "img"}, err: "want <type>=<soft>[:<hard>]"},
		{argv: []string{"create"}, err: "missing <image>"},
		{argv: []string{"exec", "c1"}, err: "missing <arguments>..."},
		{argv: []string{"start", "a", "b"}, err: `unexpected argument "b"`},
		{argv: []string{"stop"}, err: "missing <container-ids>..."},
		{argv: []string{"network", "create", "--internal", "x"}, err: "no documented command"},
		{argv: []string{"list", "--all=yes"}, err: "--all takes no value"},
		{argv: []string{"logs", "-n"}, err: "missing value"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.argv, " "), func(t *testing.T) {
			l, err := Parse(tt.argv)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Command.Name() != tt.command {
				t.Errorf("command = %q, want %q", l.Command.Name(), tt.command)
			}
			if diff := cmp.Diff(tt.opts, l.Opts); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.args, l.Args); diff != "" {
				t.Errorf("arguments (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLineValues(t *testing.T) {
	l, err := Parse([]string{"create", "-e", "A=1", "--env", "B", "--label", "x=1", "--label", "x=2", "img"})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Values("--env"); !slices.Equal(got, []string{"A=1", "B"}) {
		t.Errorf("--env = %q", got)
	}
	if v, _ := l.Value("--label"); v != "x=2" {
		t.Errorf("last --label = %q", v)
	}
	if l.Has("--init") {
		t.Error("--init was not given")
	}
}
