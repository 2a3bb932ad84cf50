package routes

import (
	"errors"
	"testing"

	"github.com/bb-bottles/bb/lib/yamlx"
	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []Route
	}{
		{"empty file", "", []Route{}},
		{"comments only", "# nothing allowed\n", []Route{}},
		{"empty list", "[]\n", []Route{}},
		{"null", "~\n", []Route{}},
		{"routes", `
- host: api.example.com
  ports: [443, 8443]
  paths: [/v1/]
  methods: [GET, POST]
  inject: {header: Authorization, token: API, format: "Bearer {token}", placeholder: sk-placeholder}
- host: "*.example.org"
  websocket: true
- host: github.com
  git: {repos: [acme/widgets], push: ["refs/heads/agent/*"]}
  inject: {header: Authorization, token: GITHUB, format: "Basic {basic:x-access-token}"}
`, []Route{
			{Host: "api.example.com", Ports: []int{443, 8443}, Paths: []string{"/v1/"}, Methods: []string{"GET", "POST"},
				Inject: &Inject{Header: "Authorization", Token: "API", Format: "Bearer {token}", Placeholder: "sk-placeholder"}},
			{Host: "*.example.org", Websocket: true},
			{Host: "github.com", Git: &Git{Repos: []string{"acme/widgets"}, Push: []string{"refs/heads/agent/*"}},
				Inject: &Inject{Header: "Authorization", Token: "GITHUB", Format: "Basic {basic:x-access-token}"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.yaml), "routes.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"bad host", "- host: example.com\n- host: ex ample.com\n",
			`routes.yaml:2:9: [1].host: "ex ample.com" is not a host name, a *. wildcard or an IP address`},
		{"upper-case host", "- host: Example.com\n", `routes.yaml:1:9: [0].host: "Example.com" must be lower case`},
		{"missing host", "- paths: [/]\n", `routes.yaml:1:3: [0].host: is required`},
		{"unknown field", "- host: example.com\n  method: [GET]\n", `routes.yaml:2:3: [0].method: unknown field "method"`},
		{"unknown inject field", "- host: example.com\n  inject:\n    header: X\n    token: T\n    value: v\n",
			`routes.yaml:5:5: [0].inject.value: unknown field "value"`},
		{"bad inject token", "- host: example.com\n  inject: {header: X, token: t}\n",
			`routes.yaml:2:30: [0].inject.token: "t" is not a token NAME (upper case, digits, _)`},
		{"bad port", "- host: example.com\n  ports: [0]\n", `routes.yaml:2:11: [0].ports[0]: 0 is not a port`},
		{"port as a string", "- host: example.com\n  ports: [\"443\"]\n", `routes.yaml:2:11: [0].ports[0]: must be an integer, not a string`},
		{"a mapping, not a list", "routes:\n  - host: example.com\n", `routes.yaml:1:1: must be a list, not a mapping`},
		{"two git routes for a host", "- host: github.com\n  git: {repos: [a/b]}\n- host: github.com\n  git: {repos: [a/c]}\n",
			`routes.yaml:4:8: [1].git: host github.com already has a git route ([0]): list all its repositories in one`},
		{"a bad push glob", "- host: github.com\n  git: {repos: [a/b], push: [\"refs/heads/a b\"]}\n",
			`routes.yaml:2:30: [0].git.push[0]: "refs/heads/a b" is not a valid ref name pattern (see git check-ref-format)`},
		{"duplicate key", "- host: a.example.com\n  host: b.example.com\n", `routes.yaml:2:3: [0].host: duplicate key "host" (first at line 1)`},
		{"syntax", "- host: a\n  - b\n", `routes.yaml:2:3: YAML syntax error: did not find expected key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "routes.yaml")
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			var ye *yamlx.Error
			if !errors.As(err, &ye) {
				t.Errorf("error is %T, not a *yamlx.Error", err)
			}
		})
	}
}
