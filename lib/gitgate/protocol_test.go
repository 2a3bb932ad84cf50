package gitgate

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		method, path, query string
		want                string // "repo service advert", or the error's start
	}{
		{"GET", "/acme/widgets/info/refs", "service=git-upload-pack", "acme/widgets git-upload-pack true"},
		{"GET", "/acme/widgets.git/info/refs", "service=git-receive-pack", "acme/widgets git-receive-pack true"},
		{"POST", "/acme/widgets.git/git-receive-pack", "", "acme/widgets git-receive-pack false"},
		{"POST", "/group/sub/project.git/git-upload-pack", "", "group/sub/project git-upload-pack false"},
		{"POST", "/acme/widgets.git.git/git-upload-pack", "", "acme/widgets.git git-upload-pack false"}, // one .git off: not listed
		{"GET", "/acme/widgets/info/refs", "", "info/refs with the query"},
		{"GET", "/acme/widgets/info/refs", "service=git-upload-pack&x=1", "info/refs with the query"},
		{"GET", "/acme/widgets/info/refs", "service=git-upload-pack&service=git-receive-pack", "info/refs with the query"},
		{"GET", "/acme/widgets/info/refs", "service=GIT-UPLOAD-PACK", "info/refs with the query"},
		{"POST", "/acme/widgets/info/refs", "service=git-upload-pack", "POST of info/refs"},
		{"GET", "/acme/widgets/git-upload-pack", "", "GET of git-upload-pack"},
		{"POST", "/acme/widgets/git-receive-pack", "x=1", "git-receive-pack with a query"},
		{"POST", "/acme//widgets/git-receive-pack", "", "the path \"/acme//widgets/git-receive-pack\" has an empty"},
		{"POST", "/acme/x/../widgets/git-receive-pack", "", "the path \"/acme/x/../widgets/git-receive-pack\" has an empty"},
		{"POST", "/acme/./widgets/git-receive-pack", "", "the path"},
		{"POST", "/acme%2Fwidgets/git-receive-pack", "", "the path \"/acme%2Fwidgets/git-receive-pack\" has an escaped"},
		{"POST", "/acme/widgets/git-receive-pack/", "", "POST /acme/widgets/git-receive-pack/ is not a git smart-HTTP endpoint"},
		{"POST", "/acme/widgets/GIT-RECEIVE-PACK", "", "POST /acme/widgets/GIT-RECEIVE-PACK is not a git smart-HTTP endpoint"},
		{"GET", "/acme/widgets.git/HEAD", "", "GET /acme/widgets.git/HEAD is not a git smart-HTTP endpoint"},
		{"GET", "/acme/widgets.git/objects/info/packs", "", "GET /acme/widgets.git/objects/info/packs is not"},
		{"POST", "/acme/widgets.git/info/lfs/objects/batch", "", "POST /acme/widgets.git/info/lfs/objects/batch is not"},
		{"POST", "/git-receive-pack", "", "the path \"/git-receive-pack\" names no repository"},
		{"POST", "/.git/git-receive-pack", "", "the path \"/.git/git-receive-pack\" names no repository"},
		{"POST", "acme/widgets/git-receive-pack", "", "the path does not start with /"},
		{"POST", "/acme/widgets;x/git-receive-pack", "", "the path \"/acme/widgets;x/git-receive-pack\" has an escaped character"},
	} {
		e, err := ParseEndpoint(tc.method, tc.path, tc.query)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = e.Repo + " " + e.Service + " " + map[bool]string{true: "true", false: "false"}[e.Advert]
		}
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s %s?%s = %q, want %q", tc.method, tc.path, tc.query, got, tc.want)
		}
	}
}

func TestRewriteAdvert(t *testing.T) {
	id := strings.Repeat("1", 40)
	var in []byte
	in = appendPkt(in, "# service=git-receive-pack\n")
	in = append(in, "0000"...)
	in = appendPkt(in, id+" refs/heads/main\x00report-status push-cert=123-abc delete-refs side-band-64k atomic\n")
	in = appendPkt(in, id+" refs/heads/other\n")
	in = append(in, "0000"...)
	var out bytes.Buffer
	if err := RewriteAdvert(&out, bytes.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	var want []byte
	want = appendPkt(want, "# service=git-receive-pack\n")
	want = append(want, "0000"...)
	want = appendPkt(want, id+" refs/heads/main\x00report-status delete-refs side-band-64k atomic no-thin\n")
	want = appendPkt(want, id+" refs/heads/other\n")
	want = append(want, "0000"...)
	if diff := cmp.Diff(string(want), out.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// An empty repository, and one that says no-thin itself.
	in = appendPkt(nil, "# service=git-receive-pack\n")
	in = append(in, "0000"...)
	in = appendPkt(in, ZeroID+" capabilities^{}\x00report-status no-thin\n")
	in = append(in, "0000"...)
	out.Reset()
	if err := RewriteAdvert(&out, bytes.NewReader(in)); err != nil || strings.Count(out.String(), "no-thin") != 1 {
		t.Errorf("%q %v", out.String(), err)
	}
	for _, bad := range []string{"", "zzzz", "0001", "0010# service=x"} {
		if err := RewriteAdvert(&out, strings.NewReader(bad)); err == nil {
			t.Errorf("%q taken", bad)
		}
	}
}

func TestWriteRefusal(t *testing.T) {
	u := &Update{Commands: []Command{{Ref: "refs/heads/a"}, {Ref: "refs/heads/b\x1b[2J"}}, Caps: []string{"report-status", "side-band-64k"}}
	var out bytes.Buffer
	if err := WriteRefusal(&out, u, []string{"bb-egress: no", "bb-egress: \x1b]0;evil\x07"}, map[string]string{"refs/heads/a": "bb-egress: a is out"}, "bb-egress: with the rest", nil); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"\x02bb-egress: no\n", "\x02bb-egress: ?]0;evil?\n", "unpack ok\n", "ng refs/heads/a bb-egress: a is out\n", "ng refs/heads/b?[2J bb-egress: with the rest\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if strings.ContainsAny(got, "\x1b\x07") || !strings.HasSuffix(got, "0000") {
		t.Errorf("%q", got)
	}
	// Plain report-status, no side band.
	out.Reset()
	u.Caps = []string{"report-status"}
	WriteRefusal(&out, u, []string{"lost"}, nil, "no", func(s string) string { return strings.ToUpper(s) })
	if strings.Contains(out.String(), "lost") || !strings.HasPrefix(out.String(), "000eunpack ok\n") || !strings.Contains(out.String(), "ng REFS/HEADS/A no") {
		t.Errorf("%q", out.String())
	}
	if CanReport(&Update{Caps: []string{"ofs-delta"}}) {
		t.Error("a client without report-status nor side-band can be told")
	}
}

// Capabilities are split as git splits them (isspace, not only ' '): a
// push-options the gate did not see would make it read the options as the
// pack.
func TestReadUpdateCaps(t *testing.T) {
	id := strings.Repeat("1", 40)
	var b []byte
	b = appendPkt(b, ZeroID+" "+id+" refs/heads/a\x00report-status\tpush-options\rquiet\x0bx\n")
	b = append(b, "0000"...)
	b = appendPkt(b, "opt\n")
	b = append(b, "0000PACK"...)
	u, err := ReadUpdate(bytes.NewReader(b), UpdateLimits{MaxCommands: 10, MaxOptions: 10, MaxText: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !u.HasCap("push-options") || !u.HasCap("report-status") || len(u.Options) != 1 || u.Options[0] != "opt" || u.HeadLen != int64(len(b)-4) {
		t.Errorf("%+v", u)
	}
	if u.HasCap("quiet") || !u.HasCap("quiet\x0bx") {
		t.Error("\\v split a capability: git's isspace does not")
	}
}
