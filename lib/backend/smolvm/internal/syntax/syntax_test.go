package syntax

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		line     string
		values   map[string][]string
		bools    []string
		pos      []string
		trailing []string
	}{
		{line: "--version"},
		{
			line:     "machine create --name a -v /x:/w -v /y:/z:ro --label bb.slug=s --network n --allow-host 100.96.1.2 -e K=V=W -- sleep infinity",
			values:   map[string][]string{"--name": {"a"}, "--volume": {"/x:/w", "/y:/z:ro"}, "--label": {"bb.slug=s"}, "--network": {"n"}, "--allow-host": {"100.96.1.2"}, "--env": {"K=V=W"}},
			trailing: []string{"sleep", "infinity"},
		},
		{line: "machine create -n a --net --cpus=2", values: map[string][]string{"--name": {"a"}, "--cpus": {"2"}}, bools: []string{"--net"}},
		{line: "machine rm -fn a", values: map[string][]string{"--name": {"a"}}, bools: []string{"--force"}},
		{line: "machine list --json", bools: []string{"--json"}},
		{line: "machine exec --name a -it -- bb attach", values: map[string][]string{"--name": {"a"}}, bools: []string{"--interactive", "--tty"}, trailing: []string{"bb", "attach"}},
		// trailing_var_arg: the command may start at the first plain word,
		// and what follows is its own, flags included.
		{line: "machine exec --name a ls -la --name", values: map[string][]string{"--name": {"a"}}, trailing: []string{"ls", "-la", "--name"}},
		{line: "machine cp ./f a:/etc/hosts --mode 644 --uid 0", values: map[string][]string{"--mode": {"644"}, "--uid": {"0"}}, pos: []string{"./f", "a:/etc/hosts"}},
		{line: "pack create --from-vm a -o /s/t", values: map[string][]string{"--from-vm": {"a"}, "--output": {"/s/t"}}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			in, err := Parse(strings.Fields(tt.line))
			if err != nil {
				t.Fatal(err)
			}
			if tt.values == nil {
				tt.values = map[string][]string{}
			}
			if diff := cmp.Diff(tt.values, in.Values); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
			var bools []string
			for _, f := range in.Cmd.Flags {
				if in.Bools[f.Long] {
					bools = append(bools, f.Long)
				}
			}
			if diff := cmp.Diff(tt.bools, bools); diff != "" {
				t.Errorf("bools (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.pos, in.Positionals); diff != "" {
				t.Errorf("positionals (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.trailing, in.Trailing); diff != "" {
				t.Errorf("trailing (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct{ line, want string }{
		{"machine create --name a --ssh-agent", "unexpected argument '--ssh-agent'"},
		{"machine create --name", "a value is required for '--name'"},
		{"machine create --name a --name b", "cannot be used multiple times"},
		{"machine create --name a sleep", "unexpected argument 'sleep'"},
		{"machine create --image x --from y", "cannot be used with"},
		// exec's --name has no short form.
		{"machine exec -n a -- true", "unexpected argument '-n'"},
		{"machine exec --name a", "required arguments were not provided"},
		{"machine exec --name a -d -t -- x", "cannot be used with"},
		{"machine delete -f", "required arguments were not provided: --name"},
		{"machine cp only-one", "takes 2 arguments"},
		{"machine stop --name a -- x", "unexpected argument '--'"},
		{"pack create --from-vm a", "required arguments were not provided: --output"},
		{"pack create -o x", "one of --from-vm is required"},
		{"machine fork --name a", "unrecognized subcommand"},
		{"serve start", "unrecognized subcommand"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			_, err := Parse(strings.Fields(tt.line))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrUsage) {
				t.Fatalf("Parse = %v, want a usage error with %q", err, tt.want)
			}
		})
	}
}

// Every flag and command cites where smolvm defines it.
func TestEveryFlagCites(t *testing.T) {
	for _, c := range append(Commands, Version) {
		if c.Cite == "" {
			t.Errorf("%s: no citation", c.Name())
		}
		for _, f := range c.Flags {
			if !strings.HasPrefix(f.Cite, "src/") || !strings.HasPrefix(f.Long, "--") {
				t.Errorf("%s %s: citation %q", c.Name(), f.Long, f.Cite)
			}
		}
	}
}
