package backend

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/plan"
)

func TestTokenValue(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tok"), []byte("  s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "two"), []byte("a\nb\n"), 0o600)
	env := func(k string) string {
		return map[string]string{"TOK": "from-env", "HOME": dir}[k]
	}
	tests := []struct {
		tok     plan.Token
		want    string
		wantErr string
	}{
		{plan.Token{Name: "A", Env: "TOK"}, "from-env", ""},
		{plan.Token{Name: "A", Env: "UNSET"}, "", "the host variable UNSET is not set"},
		{plan.Token{Name: "A", File: "~/tok"}, "s3cret", ""},
		{plan.Token{Name: "A", File: filepath.Join(dir, "tok")}, "s3cret", ""},
		{plan.Token{Name: "A", File: "~/two"}, "", "must hold one line"},
		{plan.Token{Name: "A", File: "~/none"}, "", "no such file"},
		{plan.Token{Name: "A"}, "", "neither env nor file"},
	}
	for _, tt := range tests {
		got, err := tokenValue(tt.tok, env)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("tokenValue(%+v) = %q, %v; want %q, %q", tt.tok, got, err, tt.want, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("an error names the token's value: %v", err)
		}
	}
}
