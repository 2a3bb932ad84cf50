package provider

import "github.com/bb-bottles/bb/lib/routes"

// The built-ins' telemetry hosts, opened only for an agent with
// options: {telemetry: true}.
//
// Claude Code: its "Data usage" documentation names two telemetry services,
// Statsig (operational metrics, at statsig.anthropic.com; opt out with
// DISABLE_TELEMETRY) and Sentry (error reports, sent to the ingest hosts
// under sentry.io; opt out with DISABLE_ERROR_REPORTING), and its list of
// environment variables gives CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC as
// the one switch for both (and the auto-updater and the bug command). A
// bottle without telemetry sets that switch, so the CLI does not retry
// hosts the sidecar denies.
//
// Codex: its configuration documentation ("Observability and telemetry")
// says OpenTelemetry export is off by default and, when on, goes to the
// collector the user names in [otel]; there is no fixed host to open, so
// telemetry adds no route for codex.
var claudeTelemetry = []routes.Route{
	{Host: "statsig.anthropic.com"},
	{Host: "*.sentry.io"},
}

// claudeLogin is Claude Code on a Pro or Max subscription. Claude Code
// documents a long-lived token for headless use: `claude setup-token`
// prints it (a year's OAuth token, no refresh token), and Claude Code
// reads it from CLAUDE_CODE_OAUTH_TOKEN and sends it as Authorization:
// Bearer to api.anthropic.com. So the sidecar holds it (the host's
// CLAUDE_CODE_OAUTH_TOKEN, as the token CLAUDE_OAUTH) and injects it
// there; the agent holds a placeholder in the variable, and no API key,
// which Claude Code would prefer.
//
// Codex has no such login: signed in with ChatGPT it keeps an access
// token, a refresh token and an id token in ~/.codex/auth.json, reads the
// account from the id token and refreshes the tokens itself, so the agent
// would hold (and receive, at every refresh) real tokens. A codex agent
// uses an API key; forward_login is not one of its options.
func claudeLogin() *Login {
	return &Login{
		Routes: []routes.Route{{Host: "api.anthropic.com",
			Inject: &routes.Inject{Header: "Authorization", Token: "CLAUDE_OAUTH", Format: "Bearer {token}"}}},
		Tokens:       []Token{{Name: "CLAUDE_OAUTH", Env: "CLAUDE_CODE_OAUTH_TOKEN"}},
		Placeholders: map[string]string{"CLAUDE_CODE_OAUTH_TOKEN": "CLAUDE_OAUTH"},
	}
}

var builtins = map[string]func() Provider{
	"shell": func() Provider {
		return Provider{Name: "shell", Builtin: true, Home: "/home/agent", User: "agent",
			Command: []string{"/bin/bash", "-l"}}
	},
	"claude": func() Provider {
		return Provider{Name: "claude", Builtin: true, Home: "/home/agent", User: "agent",
			Command: []string{"claude", "--dangerously-skip-permissions"},
			// The image decides Claude Code's version, not the agent.
			Env: map[string]string{"DISABLE_AUTOUPDATER": "1"},
			Routes: []routes.Route{{Host: "api.anthropic.com",
				Inject: &routes.Inject{Header: "x-api-key", Token: "ANTHROPIC"}}},
			Tokens:          []Token{{Name: "ANTHROPIC", Env: "ANTHROPIC_API_KEY"}},
			Placeholders:    map[string]string{"ANTHROPIC_API_KEY": "ANTHROPIC"},
			Options:         []string{"forward_login", "telemetry"},
			Login:           claudeLogin(),
			TelemetryRoutes: claudeTelemetry,
			NoTelemetryEnv:  map[string]string{"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"},
			// `claude "query"` starts an interactive session with an initial prompt.
			PromptArg:   true,
			Provisioner: "claude"}
	},
	"codex": func() Provider {
		return Provider{Name: "codex", Builtin: true, Home: "/home/agent", User: "agent",
			Command: []string{"codex", "--dangerously-bypass-approvals-and-sandbox"},
			Routes: []routes.Route{{Host: "api.openai.com",
				Inject: &routes.Inject{Header: "Authorization", Token: "OPENAI", Format: "Bearer {token}"}}},
			Tokens:       []Token{{Name: "OPENAI", Env: "OPENAI_API_KEY"}},
			Placeholders: map[string]string{"OPENAI_API_KEY": "OPENAI"},
			// No forward_login: see claudeLogin.
			Options: []string{"telemetry"},
			// `codex "prompt"` starts an interactive session with an initial prompt.
			PromptArg:   true,
			Provisioner: "codex"}
	},
}
