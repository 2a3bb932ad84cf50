// Package state holds bottle state on the host: one folder per slug under
// the state directory, with the plan, metadata, the egress folder (routes,
// CA, audit log) and committed images; atomic writes and a lock per slug.
package state

import (
	"errors"
	"path/filepath"
)

// Names of the files in a bottle's folder and its egress folder. The
// sidecar is started with --routes, --ca-dir and --log pointing here.
const (
	PlanFile      = "plan.json"
	MetadataFile  = "metadata.json"
	EgressDirName = "egress"
	RoutesFile    = "routes.yaml"
	CACertFile    = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	AuditLogFile  = "audit.jsonl"
	RequestsFile  = "requests.jsonl"
)

// Dir returns the state directory: $BB_STATE_DIR, else
// $XDG_STATE_HOME/bot-bottle, else ~/.local/state/bot-bottle.
func Dir(env func(string) string) (string, error) {
	if d := env("BB_STATE_DIR"); d != "" {
		return filepath.Abs(d)
	}
	if d := env("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "bot-bottle"), nil
	}
	home := env("HOME")
	if home == "" {
		return "", errors.New("finding the state directory: neither BB_STATE_DIR, XDG_STATE_HOME nor HOME is set")
	}
	return filepath.Join(home, ".local", "state", "bot-bottle"), nil
}
