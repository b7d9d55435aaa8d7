package callversions

import (
	"errors"
	"path/filepath"
	"time"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstore"
)

// corrupted is every read model's callstore.Options.OnCorrupt: it may run
// on any goroutine, with Pebble's mutex held, so it only counts and
// signals heal.
func (m *Manager) corrupted(error) {
	m.corruptions.Add(1)
	select {
	case m.damaged <- struct{}{}:
	default:
	}
}

// heal replaces a corrupt read model: it rebuilds the code's version from
// the ledger beside it (Rebuild) and switches to the new one once it has
// caught up. Until then queries answer UNAVAILABLE (callstore.ErrCorrupt)
// and CaughtUp is false, so the query service's health is NOT_SERVING;
// webhooks are not affected. A rebuild that fails is tried again, waiting
// healRetry, doubling up to a minute.
func (m *Manager) heal() {
	for {
		select {
		case <-m.damaged:
		case <-m.bgCtx.Done():
			return
		}
		wait := m.healRetry
		for m.bgCtx.Err() == nil {
			cur := m.cur.Load()
			cerr := cur.store.Corrupt()
			if cerr == nil {
				break // a switch already replaced it
			}
			m.log.Error("read model corrupt: queries answer UNAVAILABLE while a new one is rebuilt from the ledger",
				"read_model", cur.name, "err", cerr)
			began := time.Now()
			err := m.Rebuild(m.bgCtx, nil)
			if err == nil {
				m.log.Info("read model rebuilt after corruption: queries answered again",
					"read_model", m.CurrentName(), "took", time.Since(began).Round(time.Millisecond))
				break
			}
			if m.bgCtx.Err() != nil {
				return
			}
			if !errors.Is(err, ErrBusy) {
				m.log.Error("rebuilding the corrupt read model failed; trying again", "err", err, "retry_in", wait)
			}
			select {
			case <-time.After(wait):
			case <-m.bgCtx.Done():
				return
			}
			wait = min(2*wait, time.Minute)
		}
	}
}

// Corruptions counts the read models found corrupt or unusable since the
// Manager opened (each one is rebuilt).
func (m *Manager) Corruptions() uint64 { return m.corruptions.Load() }

// Damaged reports whether the read model answering queries is corrupt and
// being replaced.
func (m *Manager) Damaged() bool { return m.cur.Load().store.Corrupt() != nil }

// Backup copies the read model answering queries into root/<its name>
// (see callstore.Store.Backup) and returns that name and the position the
// copy has applied. A read model switched out under the copy is copied
// again from its successor.
func (m *Manager) Backup(root string) (name string, applied eventstore.Position, err error) {
	for {
		cur := m.cur.Load()
		applied, err = cur.store.Backup(filepath.Join(root, cur.name))
		if errors.Is(err, callstore.ErrClosed) && m.cur.Load() != cur {
			continue
		}
		return cur.name, applied, err
	}
}
