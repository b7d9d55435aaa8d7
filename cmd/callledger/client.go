package main

import (
	"flag"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// clientFlags are the flags of every command that talks to a running
// server over gRPC: its address (credentials and TLS join them here).
type clientFlags struct {
	addr string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:9090", "gRPC address of the running server (serve's --grpc-addr)")
}

// dial connects to the server (lazily: the first call reports a server
// that does not answer).
func (c *clientFlags) dial() (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("--addr %s: %w", c.addr, err)
	}
	return conn, nil
}

// loopback reports whether the server is on this machine, so that a
// relative path means the same to both.
func (c *clientFlags) loopback() bool {
	host, _, err := net.SplitHostPort(c.addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
