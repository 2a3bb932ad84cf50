package gitgate

import (
	"fmt"
	"io"
	"strings"
)

// ResultType is the Content-Type of a receive-pack answer.
const ResultType = "application/x-git-receive-pack-result"

// CanReport reports whether a client that asked for caps can be told why
// its push was refused inside a receive-pack answer (report-status lines,
// or side-band messages); otherwise only an HTTP error is left.
func CanReport(caps *Update) bool {
	return caps.HasCap("report-status") || caps.HasCap("report-status-v2") ||
		caps.HasCap("side-band-64k") || caps.HasCap("side-band")
}

// WriteRefusal writes the answer receive-pack would give a push it
// refused: lines for people on side-band channel 2 (git prints them as
// "remote: ..."), then report-status with "unpack ok" and "ng <ref>
// <reason>" for each command (git prints "[remote rejected] ... (reason)"),
// framed as the client asked: in side-band-64k or side-band packets, or
// plain. perRef gives each ref's reason; a ref it does not name gets
// others. Every text is kept to one line; ref names pass through redact
// (a ref may carry a secret the agent must not hear back), nil for none.
func WriteRefusal(w io.Writer, u *Update, messages []string, perRef map[string]string, others string, redact func(string) string) error {
	if redact == nil {
		redact = func(s string) string { return s }
	}
	band := 0
	switch {
	case u.HasCap("side-band-64k"):
		band = 65519
	case u.HasCap("side-band"):
		band = 999
	}
	var out []byte
	if band > 0 {
		for _, m := range messages {
			out = appendBand(out, 2, []byte(oneLine(m)+"\n"), band)
		}
	}
	if u.HasCap("report-status") || u.HasCap("report-status-v2") {
		var rs []byte
		rs = appendPkt(rs, "unpack ok\n")
		for _, c := range u.Commands {
			reason, ok := perRef[c.Ref]
			if !ok {
				reason = others
			}
			line := fmt.Sprintf("ng %s %s\n", oneLine(redact(c.Ref)), oneLine(reason))
			if len(line)+4 > MaxPktLine {
				line = line[:MaxPktLine-5] + "\n"
			}
			rs = appendPkt(rs, line)
		}
		rs = append(rs, "0000"...)
		if band > 0 {
			out = appendBand(out, 1, rs, band)
		} else {
			out = append(out, rs...)
		}
	}
	if band > 0 {
		out = append(out, "0000"...)
	}
	_, err := w.Write(out)
	return err
}

// appendBand appends data to channel ch in side-band packets of at most
// max bytes of data each.
func appendBand(out []byte, ch byte, data []byte, max int) []byte {
	for len(data) > 0 {
		n := min(len(data), max)
		out = fmt.Appendf(out, "%04x", n+5)
		out = append(out, ch)
		out = append(out, data[:n]...)
		data = data[n:]
	}
	return out
}

// oneLine keeps a text to one line of printable characters: a ref name is
// the agent's, and an ng reason or a remote: line ends at a line break.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return '?'
		}
		return r
	}, s)
}
