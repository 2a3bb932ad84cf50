package gitgate

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// fetchPack asks the upstream's upload-pack (protocol v0, stateless: the
// wants, the haves and "done" in one request) for the objects of wants
// that haves do not reach, and writes the pack it sends to w, at most max
// bytes. filter, when not empty, is a partial-clone filter ("tree:0"),
// sent only when the upstream advertises it.
func fetchPack(ctx context.Context, c *http.Client, base string, wants, haves []string, caps []string, filter string, w io.Writer, max int64) error {
	if len(wants) == 0 {
		return nil
	}
	has := func(name string) bool {
		for _, c := range caps {
			if c == name || strings.HasPrefix(c, name+"=") {
				return true
			}
		}
		return false
	}
	var ask []string
	for _, c := range []string{"side-band-64k", "ofs-delta", "no-progress"} {
		if has(c) {
			ask = append(ask, c)
		}
	}
	useFilter := filter != "" && has("filter")
	if useFilter {
		ask = append(ask, "filter")
	}
	ask = append(ask, "agent=bb-egress")
	var req []byte
	for i, id := range wants {
		line := "want " + id
		if i == 0 {
			line += " " + strings.Join(ask, " ")
		}
		req = appendPkt(req, line+"\n")
	}
	if useFilter {
		req = appendPkt(req, "filter "+filter+"\n")
	}
	req = append(req, "0000"...)
	for _, id := range haves {
		req = appendPkt(req, "have "+id+"\n")
	}
	req = appendPkt(req, "done\n")

	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/"+UploadPack, bytes.NewReader(req))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	hr.Header.Set("Accept", "application/x-git-upload-pack-result")
	resp, err := c.Do(hr)
	if err != nil {
		return fmt.Errorf("fetching from the upstream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching from the upstream: %s", resp.Status)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	p := &pktReader{r: br}
	// NAK, or ACK of the common commit found: one line, as the request
	// asked for no multi_ack.
	for {
		kind, line, err := p.next()
		if err != nil {
			return fmt.Errorf("reading the upstream's answer: %w", err)
		}
		if kind != pktData {
			return fmt.Errorf("reading the upstream's answer: %w", &errPkt{"a special packet before the pack"})
		}
		s := string(line)
		if strings.HasPrefix(s, "ERR ") {
			return fmt.Errorf("the upstream says: %s", strings.TrimSpace(s[4:]))
		}
		if strings.HasPrefix(s, "NAK") || strings.HasPrefix(s, "ACK ") {
			break
		}
		if strings.HasPrefix(s, "shallow ") || strings.HasPrefix(s, "unshallow ") {
			continue
		}
		return fmt.Errorf("reading the upstream's answer: %w", &errPkt{fmt.Sprintf("unexpected %q", truncate(line, 80))})
	}
	lw := &limitWriter{w: w, left: max}
	if !has("side-band-64k") {
		_, err := io.Copy(lw, br)
		return err
	}
	for {
		kind, data, err := p.next()
		if err != nil {
			return fmt.Errorf("reading the upstream's pack: %w", err)
		}
		if kind == pktFlush {
			return nil
		}
		if kind != pktData || len(data) == 0 {
			return fmt.Errorf("reading the upstream's pack: %w", &errPkt{"a bad side-band packet"})
		}
		switch data[0] {
		case 1:
			if _, err := lw.Write(data[1:]); err != nil {
				return err
			}
		case 2: // progress, asked not to send
		case 3:
			return fmt.Errorf("the upstream says: %s", strings.TrimSpace(string(data[1:])))
		default:
			return fmt.Errorf("reading the upstream's pack: %w", &errPkt{fmt.Sprintf("side-band channel %d", data[0])})
		}
	}
}

// advertisement reads the upstream's refs for upload-pack.
func advertisement(ctx context.Context, c *http.Client, base string) ([]advRef, []string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/info/refs?service="+UploadPack, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the upstream's refs: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("reading the upstream's refs: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-"+UploadPack+"-advertisement" {
		return nil, nil, fmt.Errorf("reading the upstream's refs: a %q answer, not git's smart HTTP", ct)
	}
	return readAdvert(io.LimitReader(resp.Body, 64<<20))
}

type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, &LimitError{"the upstream's pack is over the gate's limit for a pack (MaxPack)"}
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}
