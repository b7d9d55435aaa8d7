package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/tlsfiles"
)

// clientFlags are the flags of the commands that talk to a running server
// over gRPC (calls …, stats).
type clientFlags struct {
	addr          string
	token         string
	dataDir       string
	tls           bool
	tlsCA         string
	tlsCert       string
	tlsKey        string
	tlsServerName string
	output        string
	timeout       time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:9090", "gRPC address of the callledger server (its --grpc-addr)")
	fs.StringVar(&c.token, "token", "", "API token, sent as \"authorization: Bearer <token>\", when the server requires one (prefer CALLLEDGER_TOKEN: flags show in process listings)")
	fs.StringVar(&c.dataDir, "data-dir", "./data", "data directory of a server on this machine: without --token (or CALLLEDGER_TOKEN), a loopback --addr is called with the local API token the server keeps there (<data-dir>/local-api-token)")
	fs.BoolVar(&c.tls, "tls", false, "connect over TLS, trusting the system's certificate authorities (implied by the other --tls-* flags)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "PEM file of the certificate authority that signed the server's certificate (its --grpc-tls-cert)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM client certificate, for a server that requires one (--grpc-client-ca)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM key of --tls-cert")
	fs.StringVar(&c.tlsServerName, "tls-server-name", "", "name to verify the server's certificate against (default: the host of --addr)")
	fs.StringVar(&c.output, "output", "table", "output format: table (for people) or json (one protojson object per line)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "how long to wait for an answer (not for watch, which runs until interrupted)")
}

// usesTLS reports whether the connection is encrypted.
func (c *clientFlags) usesTLS() bool {
	return c.tls || c.tlsCA != "" || c.tlsCert != "" || c.tlsKey != "" || c.tlsServerName != ""
}

// check validates the flags that do not need the network.
func (c *clientFlags) check() error {
	switch c.output {
	case "table", "json":
	default:
		return fmt.Errorf("--output %q: want table or json", c.output)
	}
	if c.token != "" && !c.usesTLS() && !isLoopbackAddr(c.addr) {
		return fmt.Errorf("refusing to send the token in clear to %s: connect with --tls (or --tls-ca), or over loopback", c.addr)
	}
	return nil
}

// dial opens a connection to the server; gRPC connects lazily, so an
// unreachable server shows on the first call (see explain).
func (c *clientFlags) dial() (*grpc.ClientConn, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if c.usesTLS() {
		cfg, err := tlsfiles.ClientConfig(tlsfiles.ClientFiles{CA: c.tlsCA, Cert: c.tlsCert, Key: c.tlsKey, ServerName: c.tlsServerName, Flag: "--tls"})
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if c.token == "" && isLoopbackAddr(c.addr) && c.dataDir != "" {
		// A server on this machine guarded by its local token: use it, as
		// simulate uses the development webhook token. None is no error;
		// the server says whether it needs a token.
		if tok, err := server.ReadLocalAPIToken(c.dataDir); err == nil {
			c.token = tok
		}
	}
	if c.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: c.token, secure: c.usesTLS()}))
	}
	conn, err := grpc.NewClient(c.addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("--addr %s: %w", c.addr, err)
	}
	return conn, nil
}

// bearer sends the token with every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity: over plaintext the token goes to loopback only
// (checked by clientFlags.check).
func (b bearer) RequireTransportSecurity() bool { return b.secure }

// explain turns a failed call into what the user can do about it. what
// names the object of the call (a CallSid), for NOT_FOUND.
func (c *clientFlags) explain(err error, what string) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		lower := strings.ToLower(msg)
		switch {
		case strings.Contains(lower, "server preface") || strings.Contains(lower, "first record does not look like a tls handshake"):
			return fmt.Errorf("%s did not speak gRPC as expected: if the server uses TLS, add --tls (or --tls-ca); if not, drop the --tls flags (%s)", c.addr, msg)
		case strings.Contains(lower, "dial") || strings.Contains(lower, "connection refused") || strings.Contains(lower, "no such host") ||
			strings.Contains(lower, "connection reset") || strings.Contains(lower, "certificate") || strings.Contains(lower, "handshake"):
			return fmt.Errorf("cannot reach callledger at %s: is `callledger serve` running there with --grpc-addr %s? Set --addr (or CALLLEDGER_ADDR) to its gRPC address (%s)", c.addr, c.addr, msg)
		}
		return fmt.Errorf("callledger at %s is unavailable: %s; try again", c.addr, msg)
	case codes.Unauthenticated:
		if c.token == "" {
			return fmt.Errorf("the server requires a token: pass --token or set CALLLEDGER_TOKEN (%s)", msg)
		}
		return fmt.Errorf("the server refused the token: check --token or CALLLEDGER_TOKEN (%s)", msg)
	case codes.PermissionDenied:
		return fmt.Errorf("the token is not allowed to do this: %s (ask for a token with the scope: calls:read for queries, calls:hangup for hang-ups, projections:admin for backups, personal:erase for erasures)", msg)
	case codes.NotFound:
		if what != "" {
			return fmt.Errorf("no call %s in the ledger: check the CallSid (`callledger calls list` shows recent calls)", what)
		}
		return errors.New(msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("no answer from %s within --timeout %s: %s", c.addr, c.timeout, msg)
	case codes.Canceled:
		return context.Canceled
	}
	return errors.New(msg)
}

// jsonLine writes m as one line of protojson.
func jsonLine(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// isLoopbackAddr reports whether addr names this machine only.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
