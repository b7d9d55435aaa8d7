package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ClientFiles are the PEM files of a TLS client: the CA that signed the
// server's certificate (empty: the system's), and a client certificate
// with its key for a server that requires one. flag names each in errors
// ("--tls" gives --tls-ca, --tls-cert, --tls-key).
type ClientFiles struct {
	CA, Cert, Key, ServerName string
	Flag                      string
}

// ClientConfig is the TLS configuration of a client of files: TLS 1.2 or
// later, verifying the server.
func ClientConfig(files ClientFiles) (*tls.Config, error) {
	if (files.Cert == "") != (files.Key == "") {
		return nil, fmt.Errorf("%s-cert and %s-key go together", files.Flag, files.Flag)
	}
	cfg := &tls.Config{MinVersion: MinVersion, ServerName: files.ServerName}
	if files.CA != "" {
		pem, err := os.ReadFile(files.CA)
		if err != nil {
			return nil, fmt.Errorf("%s-ca: %w", files.Flag, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s-ca %s: no PEM certificate in it", files.Flag, files.CA)
		}
		cfg.RootCAs = pool
	}
	if files.Cert != "" {
		cert, err := keyPair(files.Flag+"-cert", files.Flag+"-key", files.Cert, files.Key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
