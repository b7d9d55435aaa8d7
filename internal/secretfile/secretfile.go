// Package secretfile reads files that hold secrets (API tokens, Twilio
// credentials, TLS private keys) the way ssh reads a private key: a file
// that its owner's group or anyone else may read or write is refused, since
// its secret has leaked already, and the error says how to fix the mode.
// Every loader of a secret file goes through it, so that they all refuse
// alike.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// ErrInsecure reports a secret file that others than its owner may read or
// write.
var ErrInsecure = errors.New("secret file accessible by group or others")

// ErrTooLarge reports a file larger than the caller's limit.
var ErrTooLarge = errors.New("secret file too large")

// Read reads path, up to limit bytes, after checking on its open
// descriptor (so that the file checked is the file read) that its mode
// grants nothing to group or others: 0600 and 0400 pass, 0640 and 0644 do
// not. what names the file in errors ("API token file", "TLS key"). Errors
// never quote the file's content.
//
// Windows has no such mode bits (its ACLs are the administrator's), so
// there only the size is checked.
func Read(what, path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if err := Check(what, path, info.Mode()); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%s %s: larger than %d bytes: %w", what, path, limit, ErrTooLarge)
	}
	return raw, nil
}

// Check refuses mode, the mode of the secret file path, when it grants
// anything to group or others.
func Check(what, path string, mode os.FileMode) error {
	if perm := mode.Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return fmt.Errorf("%s %s has mode %04o: it holds secrets, so it must be accessible by its owner only, "+
			"as ssh requires of a private key (chmod 600 %s; in Kubernetes, defaultMode 0400 on the secret volume): %w",
			what, path, perm, path, ErrInsecure)
	}
	return nil
}

// maxToken bounds a token file.
const maxToken = 4096

// Token reads a file holding one bearer token (Read's checks), without the
// white space around it; an empty file is an error.
func Token(what, path string) (string, error) {
	raw, err := Read(what, path, maxToken)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		return "", fmt.Errorf("%s %s is empty", what, path)
	}
	return tok, nil
}
