package tlsfiles_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/callledger/callledger/internal/testpki"
	"github.com/callledger/callledger/internal/tlsfiles"
)

// TestClientConfig: a client trusts the CA it is given, presents the
// certificate it is given, and refuses half a key pair or a CA file
// without a certificate, naming the flags.
func TestClientConfig(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "client test CA")
	caFile := filepath.Join(dir, "ca.pem")
	testpki.WriteFile(t, caFile, ca.PEM)
	certFile, keyFile := ca.Issue(t, testpki.Options{CommonName: "replica", Client: true}).Write(t, dir, "client")

	cfg, err := tlsfiles.ClientConfig(tlsfiles.ClientFiles{CA: caFile, Cert: certFile, Key: keyFile, Flag: "--x-tls"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs == nil || !cfg.RootCAs.Equal(ca.Pool()) || len(cfg.Certificates) != 1 {
		t.Errorf("config: roots %v, %d certificates", cfg.RootCAs, len(cfg.Certificates))
	}
	if _, err := tlsfiles.ClientConfig(tlsfiles.ClientFiles{Cert: certFile, Flag: "--x-tls"}); err == nil || !strings.Contains(err.Error(), "--x-tls-cert and --x-tls-key go together") {
		t.Errorf("a certificate without its key: %v", err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsfiles.ClientConfig(tlsfiles.ClientFiles{CA: notPEM, Flag: "--x-tls"}); err == nil || !strings.Contains(err.Error(), "--x-tls-ca") {
		t.Errorf("a CA file without a certificate: %v", err)
	}
	// The private key is a secret file: refused when others may read it.
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsfiles.ClientConfig(tlsfiles.ClientFiles{CA: caFile, Cert: certFile, Key: keyFile, Flag: "--x-tls"}); err == nil || !strings.Contains(err.Error(), "--x-tls-key") {
		t.Errorf("a client key others may read: %v, want refused naming --x-tls-key", err)
	}
}
