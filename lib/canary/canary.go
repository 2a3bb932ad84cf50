// Package canary holds the bottle canary: a random value planted in the
// agent's environment that nothing legitimate ever sends, and the reading
// of the sidecar's known secrets (the canary among them) from its
// environment.
package canary

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"github.com/bb-bottles/bb/lib/detect"
)

const (
	// Name is the canary's secret name: the sidecar holds it as
	// EGRESS_TOKEN_CANARY, and hits and audit lines name it so.
	Name = "CANARY"
	// AgentEnv is the variable the canary is planted in, in the agent.
	AgentEnv = "BOT_BOTTLE_CANARY"
	// SecretEnvPrefix starts the name of every variable that gives the
	// sidecar a secret: EGRESS_TOKEN_<NAME>=value.
	SecretEnvPrefix = "EGRESS_TOKEN_"
)

// size is the canary's entropy in bytes, as Python's
// secrets.token_urlsafe(32).
const size = 32

// New returns a fresh canary: 32 random bytes, base64url without padding
// (43 characters).
func New() (string, error) {
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Valid reports whether s is shaped like a canary New returns.
func Valid(s string) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(size) {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == size
}

// SecretsFromEnv returns the secrets environ gives as
// EGRESS_TOKEN_<NAME>=value, sorted by name, skipping empty names and
// values. Where a name is given twice the last wins, as in a process's
// environment.
func SecretsFromEnv(environ []string) []detect.Secret {
	byName := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		name, isSecret := strings.CutPrefix(k, SecretEnvPrefix)
		if !ok || !isSecret || name == "" {
			continue
		}
		if v == "" {
			delete(byName, name)
			continue
		}
		byName[name] = v
	}
	out := make([]detect.Secret, 0, len(byName))
	for name, v := range byName {
		out = append(out, detect.Secret{Name: name, Value: v})
	}
	slices.SortFunc(out, func(a, b detect.Secret) int { return strings.Compare(a.Name, b.Name) })
	return out
}
