package routes

import (
	"errors"
	"regexp"
	"strings"
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// tokenPrefixes start well-known token formats whose characters would pass
// as a variable name.
var tokenPrefixes = []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}

// CheckEnvName checks that s names the host variable holding a token, and
// is not the token itself pasted in its place. Its errors never quote s: a
// value in the wrong field is still a secret.
func CheckEnvName(s string) error {
	if !envNameRE.MatchString(s) {
		return errors.New("is not an environment variable name (letters, digits and _): " +
			"write the name of the variable that holds the token, like GITHUB_TOKEN")
	}
	if looksLikeToken(s) {
		return errors.New("looks like a token, not the name of a variable: " +
			"write the name of the variable that holds it, like GITHUB_TOKEN, and never the token itself")
	}
	return nil
}

// looksLikeToken: a known token prefix, or a long mix of upper and lower
// case and digits, which variable names (GITHUB_TOKEN) never are.
func looksLikeToken(s string) bool {
	for _, p := range tokenPrefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	var upper, lower, digit bool
	for _, c := range s {
		switch {
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= '0' && c <= '9':
			digit = true
		}
	}
	return len(s) >= 20 && upper && lower && digit
}
