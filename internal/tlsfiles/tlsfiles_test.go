package tlsfiles_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/callledger/callledger/internal/secretfile"
	"github.com/callledger/callledger/internal/testpki"
	"github.com/callledger/callledger/internal/tlsfiles"
)

// failBound bounds every wait: reaching it is a failure.
const failBound = 20 * time.Second

// echo serves s's TLS on loopback, echoing lines back, and returns the
// address.
func echo(t *testing.T, s *tlsfiles.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln := tls.NewListener(ln, s.TLSConfig("echo"))
	t.Cleanup(func() { tln.Close() })
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects with roots trusted, the client certificate cert when set,
// and returns the connection after its handshake.
func dial(addr string, roots *x509.CertPool, cert *tls.Certificate) (*tls.Conn, error) {
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"echo"}}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	d := &net.Dialer{Timeout: failBound}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	// TLS 1.3 reports a refused client certificate on the first read.
	if err := roundTrip(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func roundTrip(c *tls.Conn) error {
	_ = c.SetDeadline(time.Now().Add(failBound))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("echo mangled")
	}
	return nil
}

func pool(cas ...*testpki.CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

func serial(c *tls.Conn) string { return c.ConnectionState().PeerCertificates[0].SerialNumber.String() }

// TestReloadKeepsConnections: after a rotation, new handshakes get the new
// certificate and a connection opened before keeps working.
func TestReloadKeepsConnections(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca1, ca2 := testpki.NewCA(t, "first"), testpki.NewCA(t, "second")
	first, second := ca1.Server(t), ca2.Server(t)
	certFile, keyFile := first.Write(t, dir, "server")
	s, err := tlsfiles.New(tlsfiles.Config{CertFile: certFile, KeyFile: keyFile, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	addr := echo(t, s)
	roots := pool(ca1, ca2)
	before, err := dial(addr, roots, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if serial(before) != first.Cert.SerialNumber.String() {
		t.Fatal("not the first certificate")
	}

	second.Write(t, dir, "server")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	after, err := dial(addr, roots, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if serial(after) != second.Cert.SerialNumber.String() {
		t.Error("a handshake after the reload did not get the new certificate")
	}
	if err := roundTrip(before); err != nil {
		t.Errorf("the connection opened before the reload: %v", err)
	}
}

// TestWatchReloadsChangedFiles: replaced files are picked up without a
// signal; a key that does not match its certificate (half a rotation) is
// not, and the previous pair stays in use until the pair is whole.
func TestWatchReloadsChangedFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	first, second := ca.Server(t), ca.Server(t)
	certFile, keyFile := first.Write(t, dir, "server")
	s, err := tlsfiles.New(tlsfiles.Config{CertFile: certFile, KeyFile: keyFile, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Watch(ctx, 5*time.Millisecond)
	addr := echo(t, s)
	roots := pool(ca)

	testpki.WriteFile(t, certFile, second.CertPEM) // the key still is the first's
	if err := s.Reload(); err == nil {
		t.Fatal("a certificate with another's key was loaded")
	}
	c, err := dial(addr, roots, nil)
	if err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
	if serial(c) != first.Cert.SerialNumber.String() {
		t.Error("a failed reload changed the certificate served")
	}
	c.Close()

	testpki.WriteFile(t, keyFile, second.KeyPEM)
	deadline := time.Now().Add(failBound)
	for {
		c, err := dial(addr, roots, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := serial(c)
		c.Close()
		if got == second.Cert.SerialNumber.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new pair was not picked up within %v", failBound)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClientCertificates: with a client CA, a client without a
// certificate, with one of another CA, or with an expired one is refused in
// the handshake; one signed by the CA is served.
func TestClientCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, other := testpki.NewCA(t, "server and clients"), testpki.NewCA(t, "another")
	certFile, keyFile := ca.Server(t).Write(t, dir, "server")
	caFile := filepath.Join(dir, "clients.pem")
	testpki.WriteFile(t, caFile, ca.PEM)
	s, err := tlsfiles.New(tlsfiles.Config{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	addr := echo(t, s)
	roots := pool(ca)
	good := ca.Issue(t, testpki.Options{Client: true, CommonName: "client"}).TLS(t)
	foreign := other.Issue(t, testpki.Options{Client: true, CommonName: "client"}).TLS(t)
	expired := ca.Issue(t, testpki.Options{Client: true, CommonName: "client", Expired: true}).TLS(t)
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		ok   bool
	}{
		{"signed by the CA", &good, true},
		{"none", nil, false},
		{"of another CA", &foreign, false},
		{"expired", &expired, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial(addr, roots, tc.cert)
			if c != nil {
				c.Close()
			}
			if (err == nil) != tc.ok {
				t.Errorf("dial: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestKeyReadableByOthers: a private key others can read is refused.
func TestKeyReadableByOthers(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no Unix mode bits")
	}
	dir := t.TempDir()
	certFile, keyFile := testpki.NewCA(t, "ca").Server(t).Write(t, dir, "server")
	if err := os.Chmod(keyFile, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := tlsfiles.New(tlsfiles.Config{CertFile: certFile, KeyFile: keyFile, Name: "gRPC"})
	if !errors.Is(err, secretfile.ErrInsecure) {
		t.Errorf("New = %v, want ErrInsecure", err)
	}
}
