package server

import (
	"fmt"
	"path/filepath"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/freespace"
	"github.com/callledger/callledger/metrics"
)

// guardDisk wraps the embedded store so that appends are refused while
// the ledger's filesystem is below the free-space watermark (Disk), adds
// the disk gauges, and runs the guard's readings beside the servers.
// KurrentDB keeps the ledger on its own disks: its store is returned as
// it is.
func (s *Server) guardDisk(store eventstore.Store) (eventstore.Store, error) {
	d := s.cfg.Disk
	if s.cfg.StoreURL != "" || d.MinFreeBytes < 0 {
		return store, nil
	}
	dir := filepath.Join(s.cfg.DataDir, "ledger")
	g, err := freespace.New(freespace.Options{
		Dir: dir, Min: uint64(d.MinFreeBytes), Interval: d.CheckInterval,
		Stat: s.cfg.Seams.Statfs, Logger: s.log.With("component", "freespace"),
	})
	if err != nil {
		return nil, fmt.Errorf("--min-free-space: %w (set --min-free-space 0 to run without the guard)", err)
	}
	st := g.State()
	if st.Min < freespace.Headroom {
		s.log.Warn("--min-free-space is below what the store may need at once: a flush can still meet a full disk",
			"min_free_space", freespace.FormatSize(st.Min), "headroom", freespace.FormatSize(freespace.Headroom))
	}
	s.log.Info("free-space watermark", "dir", dir, "min_free_space", freespace.FormatSize(st.Min),
		"free", freespace.FormatSize(st.Free))
	if err := metrics.NewDisk(s.tel.reg, func() (uint64, uint64, bool) {
		st := g.State()
		return st.Free, st.Min, st.Low
	}); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s.background = append(s.background, g.Run)
	return freespace.Guarded(store, g), nil
}
