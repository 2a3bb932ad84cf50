package provider

import "github.com/bb-bottles/bb/lib/routes"

var builtins = map[string]func() Provider{
	"shell": func() Provider {
		return Provider{Name: "shell", Builtin: true, Home: "/home/agent", User: "agent",
			Command: []string{"/bin/bash", "-l"}}
	},
	"claude": func() Provider {
		return Provider{Name: "claude", Builtin: true, Home: "/home/agent", User: "agent",
			Command: []string{"claude", "--dangerously-skip-permissions"},
			Routes: []routes.Route{{Host: "api.anthropic.com",
				Inject: &routes.Inject{Header: "x-api-key", Token: "ANTHROPIC"}}},
			Tokens:       []Token{{Name: "ANTHROPIC", Env: "ANTHROPIC_API_KEY"}},
			Placeholders: map[string]string{"ANTHROPIC_API_KEY": "ANTHROPIC"},
			Options:      []string{"forward_login", "telemetry"}}
	},
	"codex": func() Provider {
		return Provider{Name: "codex", Builtin: true, Home: "/home/agent", User: "agent",
			Command: []string{"codex", "--dangerously-bypass-approvals-and-sandbox"},
			Routes: []routes.Route{{Host: "api.openai.com",
				Inject: &routes.Inject{Header: "Authorization", Token: "OPENAI", Format: "Bearer {token}"}}},
			Tokens:       []Token{{Name: "OPENAI", Env: "OPENAI_API_KEY"}},
			Placeholders: map[string]string{"OPENAI_API_KEY": "OPENAI"},
			Options:      []string{"forward_login", "telemetry"}}
	},
}
