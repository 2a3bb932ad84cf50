package egress

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bb-bottles/bb/lib/state"
)

// leafValidity is short: a leaked leaf is useless by tomorrow, and the
// cache renews it long before it expires.
const leafValidity = 24 * time.Hour

// CA is a bottle's certificate authority: it signs a leaf certificate for
// every intercepted host, and keeps a bounded cache of them.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	leafKey *ecdsa.PrivateKey // one key for all leaves: generating one per host buys nothing

	mu    sync.Mutex
	max   int
	lru   *list.List // of *leafEntry, most recent first
	byKey map[string]*list.Element
}

type leafEntry struct {
	host string
	cert *tls.Certificate
}

// LoadOrCreateCA reads ca.pem and ca-key.pem from dir, or creates them
// (ECDSA P-256; the key 0600, the certificate 0644, each written to a
// temporary file and renamed) when both are absent. One without the other
// is an error: the agent trusts the existing certificate.
func LoadOrCreateCA(dir string, cacheSize int) (*CA, error) {
	if dir == "" {
		return nil, errors.New("loading the CA: no CA folder")
	}
	certPath := filepath.Join(dir, state.CACertFile)
	keyPath := filepath.Join(dir, state.CAKeyFile)
	certPEM, errC := os.ReadFile(certPath)
	keyPEM, errK := os.ReadFile(keyPath)
	switch {
	case errors.Is(errC, fs.ErrNotExist) && errors.Is(errK, fs.ErrNotExist):
		var err error
		certPEM, keyPEM, err = createCA(dir, certPath, keyPath)
		if err != nil {
			return nil, err
		}
	case errC != nil:
		return nil, fmt.Errorf("loading the CA: %w", errC)
	case errK != nil:
		return nil, fmt.Errorf("loading the CA: %w", errK)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the CA from %s: %w", dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("loading the CA from %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, fmt.Errorf("loading the CA from %s: not an ECDSA CA", dir)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the leaf key: %w", err)
	}
	if cacheSize <= 0 {
		cacheSize = 1024
	}
	return &CA{cert: cert, key: key, leafKey: leafKey, max: cacheSize,
		lru: list.New(), byKey: map[string]*list.Element{}}, nil
}

func createCA(dir, certPath, keyPath string) (certPEM, keyPEM []byte, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating the CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "bb-egress bottle CA", Organization: []string{"bb"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the CA: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the CA: %w", err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// The key first: a certificate on disk without its key is a CA nobody
	// can use, and the next start would refuse it.
	if err := state.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, nil, fmt.Errorf("creating the CA: %w", err)
	}
	if err := state.WriteFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, nil, fmt.Errorf("creating the CA: %w", err)
	}
	return certPEM, keyPEM, nil
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// Certificate returns the CA's certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Leaf returns a certificate for host (a name or an IP literal), from the
// cache while it has more than an hour to live.
func (ca *CA) Leaf(host string) (*tls.Certificate, error) {
	now := time.Now()
	ca.mu.Lock()
	if el, ok := ca.byKey[host]; ok {
		e := el.Value.(*leafEntry)
		if now.Add(time.Hour).Before(e.cert.Leaf.NotAfter) {
			ca.lru.MoveToFront(el)
			ca.mu.Unlock()
			return e.cert, nil
		}
		ca.lru.Remove(el)
		delete(ca.byKey, host)
	}
	ca.mu.Unlock()

	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &ca.leafKey.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing a certificate for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("signing a certificate for %s: %w", host, err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: ca.leafKey, Leaf: leaf}

	ca.mu.Lock()
	defer ca.mu.Unlock()
	if el, ok := ca.byKey[host]; ok { // another goroutine signed one meanwhile
		return el.Value.(*leafEntry).cert, nil
	}
	ca.byKey[host] = ca.lru.PushFront(&leafEntry{host: host, cert: cert})
	for ca.lru.Len() > ca.max {
		old := ca.lru.Back()
		ca.lru.Remove(old)
		delete(ca.byKey, old.Value.(*leafEntry).host)
	}
	return cert, nil
}

// cached reports how many leaves the cache holds (tests).
func (ca *CA) cached() int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.lru.Len()
}
