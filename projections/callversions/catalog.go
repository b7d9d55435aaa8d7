// Package callversions keeps the versions of the call-state read model
// apart and switches between them without downtime. Each version (and each
// rebuild of one) lives in a directory of its own; a new one is built
// beside the one that answers queries, follows the log until it has caught
// up, and then takes over atomically; the old one is removed.
//
// Directory layout under the root (data-dir/projections/callstate):
//
//	v<version>              built by the live runner from an empty read model
//	v<version>-<generation> built by a rebuild (bulk load), then renamed
//	*.tmp                   a build in progress; removed at start-up
//
// A directory without the .tmp suffix is always a complete read model
// (its checkpoint says how far it got), so a crash at any point leaves
// something to serve. The current one is the highest version the code
// knows, then the highest generation.
package callversions

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/callledger/callledger/internal/privatefs"
	"github.com/callledger/callledger/projections/rebuild"
)

// tmpSuffix marks a build in progress.
const tmpSuffix = ".tmp"

// Catalog is the directory that holds every version of the read model.
type Catalog struct {
	Root string
}

// entry is one complete read-model directory.
type entry struct {
	name       string
	version    uint64
	generation uint64
}

// parseName reads v<version> or v<version>-<generation>.
func parseName(name string) (entry, bool) {
	rest, ok := strings.CutPrefix(name, "v")
	if !ok {
		return entry{}, false
	}
	ver, gen, hasGen := strings.Cut(rest, "-")
	e := entry{name: name}
	var err error
	if e.version, err = strconv.ParseUint(ver, 10, 64); err != nil || e.version == 0 {
		return entry{}, false
	}
	if hasGen {
		if e.generation, err = strconv.ParseUint(gen, 10, 64); err != nil {
			return entry{}, false
		}
	}
	return e, true
}

func (e entry) newer(o entry) bool {
	if e.version != o.version {
		return e.version > o.version
	}
	return e.generation > o.generation
}

// Path is the directory of a read model named name.
func (c Catalog) Path(name string) string { return filepath.Join(c.Root, name) }

// entries lists the complete read models.
func (c Catalog) entries() ([]entry, error) {
	des, err := os.ReadDir(c.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list read models in %s: %w", c.Root, err)
	}
	var out []entry
	for _, de := range des {
		if e, ok := parseName(de.Name()); ok && de.IsDir() {
			out = append(out, e)
		}
	}
	return out, nil
}

// current returns the newest complete read model whose version is at most
// maxVersion.
func (c Catalog) current(maxVersion uint64) (entry, bool, error) {
	es, err := c.entries()
	if err != nil {
		return entry{}, false, err
	}
	var best entry
	found := false
	for _, e := range es {
		if e.version <= maxVersion && (!found || e.newer(best)) {
			best, found = e, true
		}
	}
	return best, found, nil
}

// RemoveTemporary deletes builds a crash or a failure left behind.
func (c Catalog) RemoveTemporary() error {
	des, err := os.ReadDir(c.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list read models in %s: %w", c.Root, err)
	}
	for _, de := range des {
		if strings.HasSuffix(de.Name(), tmpSuffix) {
			if err := os.RemoveAll(c.Path(de.Name())); err != nil {
				return fmt.Errorf("remove unfinished build: %w", err)
			}
		}
	}
	return nil
}

// NewBuild reserves a directory for a new build of version: it returns the
// temporary directory to build in and the name it takes when complete.
func (c Catalog) NewBuild(version uint64) (tmp, name string, err error) {
	es, err := c.entries()
	if err != nil {
		return "", "", err
	}
	var gen uint64
	for _, e := range es {
		if e.version == version {
			gen = max(gen, e.generation)
		}
	}
	name = fmt.Sprintf("v%d-%d", version, gen+1)
	if err := privatefs.MkdirAll(c.Root); err != nil {
		return "", "", fmt.Errorf("create %s: %w", c.Root, err)
	}
	tmp = c.Path(name + tmpSuffix)
	if err := os.RemoveAll(tmp); err != nil {
		return "", "", fmt.Errorf("clear %s: %w", tmp, err)
	}
	return tmp, name, nil
}

// Build rebuilds version from the whole log into a temporary directory
// and commits it under its generation's name, which it returns; a failed
// build leaves nothing behind. The offline command and the Manager build
// through it alike.
func (c Catalog) Build(ctx context.Context, log rebuild.Log, version uint64, opts rebuild.Options) (string, rebuild.Stats, error) {
	tmp, name, err := c.NewBuild(version)
	if err != nil {
		return "", rebuild.Stats{}, err
	}
	opts.Version = version
	st, err := rebuild.Build(ctx, log, tmp, opts)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", st, err
	}
	if err := c.Commit(tmp, name); err != nil {
		return "", st, err
	}
	return name, st, nil
}

// Commit turns a finished, closed build into a complete read model: one
// rename, made durable by syncing the root directory.
func (c Catalog) Commit(tmp, name string) error {
	if err := os.Rename(tmp, c.Path(name)); err != nil {
		return fmt.Errorf("commit read model %s: %w", name, err)
	}
	d, err := os.Open(c.Root)
	if err != nil {
		return fmt.Errorf("commit read model %s: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("commit read model %s: sync %s: %w", name, c.Root, err)
	}
	return nil
}

// RemoveOlder deletes every complete read model older than keep. Newer
// ones (written by a newer release) are left alone.
func (c Catalog) RemoveOlder(keep string) error {
	k, ok := parseName(keep)
	if !ok {
		return fmt.Errorf("read model name %q", keep)
	}
	es, err := c.entries()
	if err != nil {
		return err
	}
	for _, e := range es {
		if k.newer(e) {
			if err := os.RemoveAll(c.Path(e.name)); err != nil {
				return fmt.Errorf("remove read model %s: %w", e.name, err)
			}
		}
	}
	return nil
}

// Current returns the name and version of the read model a server of
// maxVersion serves, and whether there is one.
func (c Catalog) Current(maxVersion uint64) (name string, version uint64, ok bool, err error) {
	e, ok, err := c.current(maxVersion)
	return e.name, e.version, ok, err
}
