package docker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/image"
)

// UpstreamRepo is the repository of the test upstream's images
// (scripts/upstream), tagged like the sidecar's by its binary's hash.
const upstreamRepo = "bb-upstream"

// labelUpstreamSHA256 holds the full SHA-256 of the image's binary.
const labelUpstreamSHA256 = "bb.upstream.sha256"

// roleUpstream marks the test upstreams: labelled with the bottle's slug,
// they go when the bottle stops.
const roleUpstream = "upstream"

const upstreamDockerfile = `FROM scratch
COPY upstream /upstream
ENTRYPOINT ["/upstream"]
`

var (
	upstreamOnce sync.Once
	upstreamRef  string
	upstreamErr  error
)

// upstreamImage builds scripts/upstream, static, into an image FROM scratch,
// once per test binary (the demo builds the same tag from the same flags).
// It may run on any goroutine.
func upstreamImage(c *client.Client) (string, error) {
	upstreamOnce.Do(func() { upstreamRef, upstreamErr = buildUpstream(c) })
	return upstreamRef, upstreamErr
}

func buildUpstream(c *client.Client) (string, error) {
	dir, err := os.MkdirTemp("", "bb-upstream-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "upstream")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, "./scripts/upstream")
	cmd.Dir = "../../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building scripts/upstream: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	sum, err := image.FileHash(bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	ref := upstreamRepo + ":" + image.Tag(sum)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ok, have, err := imageExists(ctx, c, ref)
	if err != nil {
		return "", err
	}
	if ok && have[labelUpstreamSHA256] == sum {
		return ref, nil
	}
	labels := withTestLabels(map[string]string{LabelRole: roleUpstream, labelUpstreamSHA256: sum})
	err = buildImage(ctx, c, ref, image.Context{Dockerfile: []byte(upstreamDockerfile),
		Files: map[string]image.File{"upstream": {Data: data, Mode: 0o755}}}, nil, labels, nil)
	return ref, err
}

// writeUpstreamCerts writes what 'upstream cert' does — a throwaway CA
// (ca.pem) and a leaf for names (cert.pem, key.pem) — here, so that the
// bottle can launch trusting the CA while the upstream image builds.
func writeUpstreamCerts(t *testing.T, dir string, names ...string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bb escape suite upstream CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{"ca.pem": {Type: "CERTIFICATE", Bytes: caDER},
		"cert.pem": {Type: "CERTIFICATE", Bytes: leafDER}, "key.pem": {Type: "PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// upstream is one running test upstream.
type upstream struct {
	c    *client.Client
	name string
	id   string
	ip   string
}

// startUpstream runs the upstream image as name on network, reachable there
// by aliases, serving HTTP on 80 and HTTPS on 443 with the certificate in
// tlsDir; it is labelled with slug, so the bottle's stop removes it, and
// removed when t ends anyway.
func startUpstream(t *testing.T, c *client.Client, ref, slug, network_, tlsDir, name string, aliases ...string) *upstream {
	t.Helper()
	ctx := t.Context()
	res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:  "bot-bottle-" + slug + "-up-" + name,
		Image: ref,
		Config: &container.Config{Cmd: []string{"serve", "--name", name, "--tls-dir", "/tls"}, User: "65532:65532",
			Labels: withTestLabels(map[string]string{LabelSlug: slug, LabelRole: roleUpstream})},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(network_),
			Mounts: []mount.Mount{{Type: mount.TypeBind, Source: tlsDir, Target: "/tls", ReadOnly: true}}},
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			network_: {Aliases: aliases}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeContainer(context.Background(), c, res.ID) })
	if _, err := c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	u := &upstream{c: c, name: name, id: res.ID}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, errOut := u.output(t)
		if strings.Count(errOut, "listening on") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream %s did not listen: %q", name, errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	in, err := c.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ep := in.Container.NetworkSettings.Networks[network_]; ep != nil && ep.IPAddress.IsValid() {
		u.ip = ep.IPAddress.String()
	} else {
		t.Fatalf("upstream %s has no address on %s", name, network_)
	}
	return u
}

func (u *upstream) output(t *testing.T) (string, string) {
	t.Helper()
	rc, err := u.c.ContainerLogs(context.Background(), u.id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out, errb bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errb, rc); err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String()
}

// seen is one request as an upstream recorded it (scripts/upstream's Seen).
type seen struct {
	Upstream string              `json:"upstream"`
	Scheme   string              `json:"scheme"`
	Method   string              `json:"method"`
	Host     string              `json:"host"`
	Path     string              `json:"path"`
	Query    string              `json:"query"`
	Headers  map[string][]string `json:"headers"`
	BodyLen  int64               `json:"body_len"`
}

// seen returns every request the upstream has answered, and its raw record.
func (u *upstream) seen(t *testing.T) ([]seen, string) {
	t.Helper()
	out, _ := u.output(t)
	var all []seen
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s seen
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("upstream %s printed %q: %v", u.name, sc.Text(), err)
		}
		all = append(all, s)
	}
	return all, out
}

// saw returns the requests the upstream answered whose path holds marker.
func (u *upstream) saw(t *testing.T, marker string) []seen {
	t.Helper()
	all, _ := u.seen(t)
	var out []seen
	for _, s := range all {
		if strings.Contains(s.Path, marker) || strings.Contains(s.Query, marker) {
			out = append(out, s)
		}
	}
	return out
}
