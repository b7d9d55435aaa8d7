package main

import (
	"flag"
	"log/slog"

	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/keystore"
)

// kekFlag is --kek-file, which serve and the commands that read personal
// data from a stopped server's data directory take alike.
type kekFlag struct{ file string }

func (k *kekFlag) register(fs *flag.FlagSet) {
	fs.StringVar(&k.file, "kek-file", "", "key-encryption key that protects the keys of every call's personal data: a file of 32 random bytes in base64 "+
		"(openssl rand -base64 32 > kek && chmod 600 kek), readable by its owner only, kept off the data directory and its backups; "+
		"empty: a development key generated in <data-dir>/dev-kek (loopback --http-addr only)")
}

// open opens the key store of dataDir with the KEK the flag names, or the
// development one.
func (k *kekFlag) open(dataDir string, log *slog.Logger) (*keystore.Embedded, error) {
	return server.OpenKeys(dataDir, k.file, log)
}
