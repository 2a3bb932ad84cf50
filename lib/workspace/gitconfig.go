package workspace

import (
	"bufio"
	"bytes"
	"sort"
	"strings"
)

// keptKeys are the settings of the person's repository that the agent's
// copy keeps: what the repository is (its format, which git must know to
// read it) and where its remotes and submodules are. Nothing that names a
// command, a hook, a file to include or a helper: those run code.
var keptKeys = map[string]map[string]bool{
	"core": {"repositoryformatversion": true, "filemode": true, "symlinks": true, "ignorecase": true,
		"precomposeunicode": true, "autocrlf": true, "eol": true, "sparsecheckout": true,
		"sparsecheckoutcone": true, "logallrefupdates": true},
	"extensions": {"objectformat": true, "refstorage": true, "partialclone": true,
		"preciousobjects": true, "compatobjectformat": true, "noop": true},
	"remote": {"url": true, "pushurl": true, "fetch": true, "push": true, "promisor": true,
		"partialclonefilter": true, "tagopt": true, "mirror": true},
	"branch":    {"remote": true, "merge": true, "rebase": true, "pushremote": true},
	"submodule": {"url": true, "active": true, "branch": true},
}

// configEntry is one setting: section (lower case), subsection (as
// written), key (lower case), value.
type configEntry struct {
	section, sub, key, value string
}

// FilterConfig returns the settings of a git configuration file that the
// agent's repository keeps (keptKeys; a submodule's core.worktree too,
// when relative), as a configuration of its own, and the names of those
// it left out. The text is only parsed, never included or run: what does
// not parse is left out. hostRemote, when set, is the URL of a remote
// named "host" added to it: the person's repository, read-only, from which
// the agent fetches what the person commits while it works.
func FilterConfig(text []byte, module bool, hostRemote string) ([]byte, []string) {
	var kept []configEntry
	dropped := map[string]bool{}
	for _, e := range parseConfig(text) {
		keys := keptKeys[e.section]
		ok := keys[e.key]
		if e.section == "core" && e.key == "worktree" && module && !strings.HasPrefix(e.value, "/") {
			ok = true
		}
		if e.section == "core" && e.key == "bare" {
			continue // written below
		}
		if (e.section == "remote" || e.section == "branch" || e.section == "submodule") == (e.sub == "") {
			ok = false // those three have a subsection, the others none
		}
		if e.sub == "host" && e.section == "remote" {
			ok = false // the name is bb's
		}
		if !ok || strings.ContainsAny(e.value, "\n\x00") || strings.ContainsAny(e.sub, "\n\x00") {
			name := e.section + "." + e.key
			if e.sub != "" {
				name = e.section + ".<" + e.section + ">." + e.key
			}
			dropped[name] = true
			continue
		}
		kept = append(kept, e)
	}
	kept = append(kept, configEntry{section: "core", key: "bare", value: "false"})
	if hostRemote != "" {
		kept = append(kept, configEntry{section: "remote", sub: "host", key: "url", value: hostRemote},
			configEntry{section: "remote", sub: "host", key: "fetch", value: "+refs/heads/*:refs/remotes/host/*"})
	}
	var names []string
	for n := range dropped {
		names = append(names, n)
	}
	sort.Strings(names)
	return writeConfig(kept), names
}

// writeConfig writes entries grouped by section in their first order,
// every value quoted.
func writeConfig(es []configEntry) []byte {
	type sec struct{ section, sub string }
	var order []sec
	groups := map[sec][]configEntry{}
	for _, e := range es {
		k := sec{e.section, e.sub}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	var b bytes.Buffer
	for _, k := range order {
		if k.sub == "" {
			b.WriteString("[" + k.section + "]\n")
		} else {
			b.WriteString("[" + k.section + " " + quoteConfig(k.sub) + "]\n")
		}
		for _, e := range groups[k] {
			b.WriteString("\t" + e.key + " = " + quoteConfig(e.value) + "\n")
		}
	}
	return b.Bytes()
}

func quoteConfig(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// parseConfig reads git's configuration syntax: [section], [section
// "sub"], the old [section.sub], name = value with quotes, escapes, # and
// ; comments and backslash-newline continuations, and a bare name (true).
func parseConfig(text []byte) []configEntry {
	var out []configEntry
	section, sub := "", ""
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var pending string
	for sc.Scan() {
		line := pending + sc.Text()
		pending = ""
		if strings.HasSuffix(line, `\`) && !strings.HasSuffix(line, `\\`) {
			pending = strings.TrimSuffix(line, `\`)
			continue
		}
		rest := strings.TrimSpace(line)
		if strings.HasPrefix(rest, "[") {
			var ok bool
			section, sub, rest, ok = parseSection(rest)
			if !ok {
				section, sub = "", ""
				continue
			}
		}
		if rest == "" || rest[0] == '#' || rest[0] == ';' || section == "" {
			continue
		}
		key, value, ok := parseVar(rest)
		if !ok {
			continue
		}
		out = append(out, configEntry{section: section, sub: sub, key: key, value: value})
	}
	return out
}

func parseSection(line string) (section, sub, rest string, ok bool) {
	end := -1
	inQuote := false
	for i := 1; i < len(line); i++ {
		c := line[i]
		if inQuote && c == '\\' && i+1 < len(line) {
			i++
			continue
		}
		if c == '"' {
			inQuote = !inQuote
		}
		if c == ']' && !inQuote {
			end = i
			break
		}
	}
	if end < 0 {
		return "", "", "", false
	}
	head := strings.TrimSpace(line[1:end])
	rest = strings.TrimSpace(line[end+1:])
	if name, q, found := strings.Cut(head, " "); found {
		q = strings.TrimSpace(q)
		if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
			return "", "", "", false
		}
		var b strings.Builder
		for i := 1; i < len(q)-1; i++ {
			if q[i] == '\\' && i+1 < len(q)-1 {
				i++
			}
			b.WriteByte(q[i])
		}
		return strings.ToLower(name), b.String(), rest, validName(name, true)
	}
	if name, s, found := strings.Cut(head, "."); found {
		return strings.ToLower(name), strings.ToLower(s), rest, validName(name, true)
	}
	return strings.ToLower(head), "", rest, validName(head, true)
}

func validName(s string, dots bool) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || dots && c == '.') {
			return false
		}
	}
	return true
}

func parseVar(line string) (key, value string, ok bool) {
	name, raw, hasValue := strings.Cut(line, "=")
	name = strings.TrimSpace(name)
	if !hasValue {
		// A bare name is true; a comment may follow it.
		if i := strings.IndexAny(name, "#;"); i >= 0 {
			name = strings.TrimSpace(name[:i])
		}
		if !validName(name, false) {
			return "", "", false
		}
		return strings.ToLower(name), "true", true
	}
	if !validName(name, false) {
		return "", "", false
	}
	var b strings.Builder
	inQuote := false
	space := 0 // spaces seen outside quotes, kept only when text follows
	raw = strings.TrimLeft(raw, " \t")
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\\' && i+1 < len(raw):
			i++
			for ; space > 0; space-- {
				b.WriteByte(' ')
			}
			switch raw[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'b':
				b.WriteByte('\b')
			case '"', '\\':
				b.WriteByte(raw[i])
			default:
				return "", "", false
			}
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (c == '#' || c == ';'):
			i = len(raw)
		case !inQuote && (c == ' ' || c == '\t'):
			space++
		default:
			for ; space > 0; space-- {
				b.WriteByte(' ')
			}
			b.WriteByte(c)
		}
	}
	if inQuote {
		return "", "", false
	}
	return strings.ToLower(name), b.String(), true
}
