package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	ucli "github.com/urfave/cli/v2"
)

func TestCodeOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"usage", Usagef("bad"), ExitUsage},
		{"backend", Backend(errors.New("engine down")), ExitBackend},
		{"negative", Negative(nil), ExitNegative},
		{"passed through", Exit(42), 42},
		{"wrapped backend", fmt.Errorf("launching: %w", Backend(errors.New("x"))), ExitBackend},
		{"hint keeps code", WithHint(Backend(errors.New("x")), "try again"), ExitBackend},
		{"cancelled", context.Canceled, ExitInterrupted},
		{"unknown kind is a failure, not bad usage", errors.New("plain"), ExitBackend},
	} {
		if got := CodeOf(tc.err); got != tc.want {
			t.Errorf("%s: CodeOf = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestReport(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"message and hints", Usage(errors.New("reading manifest <stdin>: empty input"), "pipe bb-manifest into it"),
			"bb-plan: reading manifest <stdin>: empty input\nhint: pipe bb-manifest into it\n"},
		{"wrapped hints", fmt.Errorf("loading: %w", WithHint(Usagef("bad"), "one", "two")),
			"bb-plan: loading: bad\nhint: one\nhint: two\n"},
		{"silent exit", Exit(7), ""},
		{"silent negative", Negative(nil), ""},
		{"interrupt", context.Canceled, "bb-plan: interrupted\n"},
		{"interrupt names the step", fmt.Errorf("waiting: %w", context.Canceled), "bb-plan: waiting: interrupted\n"},
		{"interrupt names the outermost step", &Error{Code: ExitBackend, Err: fmt.Errorf("starting the sidecar: %w",
			Backend(fmt.Errorf("creating container x: %w", &url.Error{Op: "Post", URL: "http://x", Err: context.Canceled})))},
			"bb-plan: starting the sidecar: interrupted\n"},
		{"interrupt cut an engine call", fmt.Errorf("starting the sidecar: %w", fmt.Errorf("%w: creating container x: %w", context.Canceled, context.Canceled)),
			"bb-plan: starting the sidecar: interrupted\n"},
	} {
		var b bytes.Buffer
		Report(&b, "bb-plan", tc.err)
		if diff := cmp.Diff(tc.want, b.String()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// testApp has one subcommand taking flags before or after its arguments.
func testApp(got *[]string, rm *bool) *ucli.App {
	return &ucli.App{Name: "bb-test", Commands: []*ucli.Command{{
		Name:  "stop",
		Flags: []ucli.Flag{&ucli.BoolFlag{Name: "rm"}, &ucli.StringFlag{Name: "format"}},
		Action: func(c *ucli.Context) error {
			args, err := Positional(c)
			if errors.Is(err, ErrHelpShown) {
				return nil
			}
			if err != nil {
				return err
			}
			*got, *rm = args, c.Bool("rm")
			if f := c.String("format"); f != "" {
				*got = append(*got, "format="+f)
			}
			return nil
		},
	}}}
}

func TestRunAndPositional(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		pos      []string
		rm       bool
		stderr   string
		inStdout string
	}{
		{args: []string{"stop", "slug-1"}, pos: []string{"slug-1"}},
		{args: []string{"stop", "slug-1", "--rm"}, pos: []string{"slug-1"}, rm: true},
		{args: []string{"stop", "--rm", "slug-1"}, pos: []string{"slug-1"}, rm: true},
		{args: []string{"stop", "slug-1", "--format", "table"}, pos: []string{"slug-1", "format=table"}},
		{args: []string{"stop", "slug-1", "--format=json"}, pos: []string{"slug-1", "format=json"}},
		{args: []string{"stop", "slug-1", "--", "--rm"}, pos: []string{"slug-1", "--rm"}},
		{args: []string{"stop", "slug-1", "--nope"}, code: ExitUsage,
			stderr: "bb-test: flag provided but not defined: -nope\nhint: run 'bb-test stop --help' for usage\n"},
		{args: []string{"stop", "slug-1", "--format"}, code: ExitUsage,
			stderr: "bb-test: flag needs an argument: -format\nhint: run 'bb-test stop --help' for usage\n"},
		{args: []string{"stop", "--bad-before"}, code: ExitUsage},
		{args: []string{"stop", "slug-1", "--help"}, inStdout: "bb-test stop"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var pos []string
			var rm bool
			var out, errb bytes.Buffer
			code := Run(t.Context(), testApp(&pos, &rm), Streams{In: strings.NewReader(""), Out: &out, Err: &errb},
				append([]string{"bb-test"}, tc.args...))
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, errb.String())
			}
			if tc.stderr != "" && errb.String() != tc.stderr {
				t.Errorf("stderr = %q, want %q", errb.String(), tc.stderr)
			}
			if tc.code == 0 && tc.inStdout == "" {
				if diff := cmp.Diff(tc.pos, pos); diff != "" || rm != tc.rm {
					t.Errorf("positional (-want +got):\n%s rm=%v", diff, rm)
				}
			}
			if !strings.Contains(out.String(), tc.inStdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.inStdout)
			}
			if tc.code != 0 && out.Len() != 0 {
				t.Errorf("an error wrote to stdout: %q", out.String())
			}
		})
	}
}


// An action's unclassified error is a failure (3); the framework's own
// refusal of a command line (a required flag missing) is bad usage (2).
func TestRunClassifies(t *testing.T) {
	app := func() *ucli.App {
		return &ucli.App{Name: "bb-test", Commands: []*ucli.Command{
			{Name: "fail", Action: func(*ucli.Context) error { return errors.New("writing state: no space left on device") }},
			{Name: "typed", Action: func(*ucli.Context) error { return fmt.Errorf("reading: %w", Usagef("bad")) }},
			{Name: "need", Flags: []ucli.Flag{&ucli.StringFlag{Name: "routes", Required: true}},
				Action: func(*ucli.Context) error { return nil }},
		}}
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"fail"}, ExitBackend, "bb-test: writing state: no space left on device\n"},
		{[]string{"typed"}, ExitUsage, "bb-test: reading: bad\n"},
		{[]string{"need"}, ExitUsage, "bb-test: Required flag \"routes\" not set\nhint: run 'bb-test --help' for usage\n"},
	} {
		a := app()
		for range 2 { // a second run of the same app classifies the same
			var out, errb bytes.Buffer
			code := Run(t.Context(), a, Streams{In: strings.NewReader(""), Out: &out, Err: &errb}, append([]string{"bb-test"}, tc.args...))
			if code != tc.code || errb.String() != tc.stderr {
				t.Errorf("%v: exit %d, stderr %q; want %d, %q", tc.args, code, errb.String(), tc.code, tc.stderr)
			}
		}
	}
}

// Another command's output, or no JSON at all, is named with what to do.
func TestDecodeDoc(t *testing.T) {
	type doc struct {
		Kind    string `json:"kind"`
		Version int    `json:"version"`
	}
	for in, want := range map[string]string{
		"":                                     "empty input, want a bb.plan",
		"usage: bb-plan ...\nmore":             `text starting "usage: bb-plan ..."`,
		`[{"name":"a"}]`:                       "a JSON list",
		`{"kind":"bb.manifest","version":1}`:   "this is a bb.manifest (what bb-manifest AGENT prints), not a bb.plan",
		`{"slug":"a","agent_container":"b"}`:   "bb-launch's launch record",
		`{"version":1}`:                        `without "kind"`,
		`{"kind":"bb.plan","version":1,"x":1}`: `has a field this bb-launch does not know: "x"`,
		`{"kind":"bb.plan","version":1`:        "is cut short",
		`{"kind":"bb.plan"}{"kind":"bb.plan"}`: "more than one JSON document",
		`{"kind":"bb.other"}`:                  `kind is "bb.other", want "bb.plan"`,
	} {
		var v doc
		err := DecodeDoc(strings.NewReader(in), "<stdin>", "bb.plan", &v)
		if err == nil || !strings.Contains(err.Error(), want) || CodeOf(err) != ExitUsage {
			t.Errorf("%q: %v, want exit 2 and %q", in, err, want)
		}
	}
	var v doc
	if err := DecodeDoc(strings.NewReader(" {\"kind\":\"bb.plan\",\"version\":1}\n"), "<stdin>", "bb.plan", &v); err != nil || v.Version != 1 {
		t.Errorf("a plan: %v %+v", err, v)
	}
}
