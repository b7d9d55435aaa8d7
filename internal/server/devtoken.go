package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/callledger/callledger/internal/privatefs"
)

// devTokenFile holds the development auth token that the server makes up
// when no Twilio token is configured, and `simulate` reads to sign its
// traffic.
const devTokenFile = "dev-auth-token"

func devTokenPath(dataDir string) string { return filepath.Join(dataDir, devTokenFile) }

// devToken returns the development token of dataDir, creating it once.
func devToken(dataDir string) (string, error) {
	if tok, err := ReadDevToken(dataDir); err == nil {
		return tok, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make development token: %w", err)
	}
	tok := "dev" + hex.EncodeToString(b[:])
	if err := privatefs.WriteFile(devTokenPath(dataDir), []byte(tok+"\n")); err != nil {
		return "", fmt.Errorf("write development token: %w", err)
	}
	return tok, nil
}

// ReadDevToken returns the development token of a development server's
// dataDir, for signing traffic to it.
func ReadDevToken(dataDir string) (string, error) {
	b, err := os.ReadFile(devTokenPath(dataDir))
	if err != nil {
		return "", fmt.Errorf("read development token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("development token file %s is empty", devTokenPath(dataDir))
	}
	return tok, nil
}
