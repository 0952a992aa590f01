package redis

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rediss:// speaks TLS and checks the server's certificate and name: a private CA is trusted
// only when given, and a certificate for another name is refused.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "airlock test CA", nil)
	leaf, leafKey := newCert(t, ca, caKey, "redis", []net.IP{net.IPv4(127, 0, 0, 1)})
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	writePEM(t, filepath.Join(dir, "cert.pem"), "CERTIFICATE", leaf.Raw)
	der, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "key.pem"), "EC PRIVATE KEY", der)
	srv := startRedis(t, "--port", "0", "--tls-port", "{port}",
		"--tls-cert-file", filepath.Join(dir, "cert.pem"), "--tls-key-file", filepath.Join(dir, "key.pem"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"), "--tls-auth-clients", "no")
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	addr := "127.0.0.1:" + strconv.Itoa(srv.Port)

	s, err := Open(t.Context(), "rediss://"+addr+"/0", WithTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ok, err := s.Reserve(hourKey("c", "grant", "a"), 1, 1); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if got, want := s.Describe(), "redis "+addr+"/0 tls"; got != want {
		t.Fatalf("Describe() = %q; want %q", got, want)
	}
	for _, tc := range []struct {
		name, url string
		conf      *tls.Config
		want      string
	}{
		{"unknown CA", "rediss://" + addr + "/0", nil, "certificate"},
		{"wrong name", "rediss://" + addr + "/0", &tls.Config{RootCAs: roots, ServerName: "other.example"}, "certificate"},
		{"plaintext URL with TLS config", "redis://" + addr + "/0", &tls.Config{RootCAs: roots}, "needs a rediss:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []Option
			if tc.conf != nil {
				opts = append(opts, WithTLSConfig(tc.conf))
			}
			s, err := Open(t.Context(), tc.url, opts...)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q; want it to mention %q", err, tc.want)
			}
		})
	}
}

func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, ips []net.IP) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  ips,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	signer := key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		parent = tmpl
	} else {
		signer = parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
