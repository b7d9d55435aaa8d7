// Package erasure is the erasure use case: it erases the personal data of
// a call's tree, of every call a number took part in, or of given call
// legs (retention), by destroying their data keys (docs/PRIVACY.md). The
// order makes it durable and repeatable: the erasure is written to the
// erasure journal (synced) first, then the keys are destroyed and removed
// from every file of the key store, then an ErasureRecorded event is
// appended, whose fold redacts the calls in the read model, and the read
// model's files are scrubbed. A crash anywhere is repaired by replaying
// the journal (Replay), which serve does on start. The package owns the
// ErasureRecorded event. Adapters (the gRPC service in services/admin, the
// retention job) turn its refusals into their own codes.
//
// Rules:
//   - Exactly one of Number, CallSid and CallSids; a malformed CallSid,
//     or a number that is empty, is ErrInvalid. A requester is required.
//   - CallSid is widened to its tree (callstate.TreeReader); a call the
//     read model does not know is ErrNotFound.
//   - Number is widened to the subjects the key store's party index lists
//     for it and the calls of the read model that name it (from, to,
//     forwarded-from: calls stored before their numbers were indexed),
//     each call widened to its tree.
//   - CallSids are erased as given, not widened (retention: each leg ages
//     on its own).
//   - Nothing found: nothing is written, and the Result is empty.
package erasure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/projections/callstate"
)

// Log is the part of the event log erasures write and read: every
// eventstore.Store implements it.
type Log interface {
	Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error)
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error)
}

// Keys is the part of the key store erasures use; keystore.Store
// implements it.
type Keys interface {
	Subjects(ctx context.Context, party string) ([]string, error)
	Destroy(ctx context.Context, subjects ...string) (keystore.DestroyResult, error)
}

// ReadModel is the call-state read model as erasures need it:
// callversions.Manager implements it.
type ReadModel interface {
	callstate.TreeReader
	// Find lists the calls whose view match accepts (a full scan).
	Find(ctx context.Context, match func(*callledgerv1.Call) bool) ([]string, error)
	// WaitFor waits until the read model has applied pos.
	WaitFor(ctx context.Context, pos eventstore.Position) error
	// Scrub removes the earlier versions of the calls' records from its
	// files.
	Scrub(ctx context.Context, sids []string) error
}

// Refusals: errors.Is tells them apart. Nothing is erased for a refused
// request.
var (
	// ErrInvalid: the request is malformed and can never succeed.
	ErrInvalid = errors.New("invalid erasure request")
	// ErrNotFound: the read model knows no such call.
	ErrNotFound = errors.New("no such call")
)

// Request asks for an erasure.
type Request struct {
	// Number is a phone number or a client:/sip: identity.
	Number string
	// CallSid is a call whose tree is erased.
	CallSid string
	// CallSids are call legs erased as given.
	CallSids []string
	// By is who asks: the authenticated principal, or "retention".
	By string
}

// Result is what an erasure did.
type Result struct {
	// ID is the erasure's ID in the journal and the log; empty when
	// nothing was found to erase.
	ID string
	// Subjects are the subjects erased, sorted: CallSids, and
	// quarantine:<event ID> for quarantined requests.
	Subjects []string
	// CallSids are the erased call legs among them.
	CallSids []string
	// Keys is what the key store found.
	Keys keystore.DestroyResult
	// PlaintextEvents counts the events of the erased calls whose
	// personal data the log holds in the clear (written before sealing).
	PlaintextEvents int64
	// Position is the log position of the ErasureRecorded event.
	Position eventstore.Position
}

// Config wires a Service.
type Config struct {
	Log       Log
	Keys      Keys
	ReadModel ReadModel
	// Journal records every erasure before it is carried out; required.
	Journal *Journal
	Logger  *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// NewID names an erasure (default a random UUID).
	NewID func() string
	// ScrubWait bounds how long an erasure waits for the read model to
	// apply its ErasureRecorded before scrubbing it (default 30 s).
	ScrubWait time.Duration
}

// Service carries out erasures.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New builds the service.
func New(cfg Config) (*Service, error) {
	if cfg.Log == nil || cfg.Keys == nil || cfg.ReadModel == nil || cfg.Journal == nil {
		return nil, errors.New("erasure: Log, Keys, ReadModel and Journal are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = uuid.NewString
	}
	if cfg.ScrubWait <= 0 {
		cfg.ScrubWait = 30 * time.Second
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "erasure")}, nil
}

// maxBy bounds the requester's name.
const maxBy = 256

// Erase carries out req. The journal line, the key destruction and the
// event are durable when it returns without error; an error after the
// journal line says what is left, and replaying the journal finishes it.
func (s *Service) Erase(ctx context.Context, req Request) (Result, error) {
	subjects, err := s.subjects(ctx, req)
	if err != nil {
		return Result{}, err
	}
	if len(subjects) == 0 {
		return Result{}, nil
	}
	e := Entry{ID: s.cfg.NewID(), At: s.cfg.Now().UTC(), By: req.By, Subjects: subjects}
	return s.carryOut(ctx, e, false)
}

// subjects resolves a request into sorted, distinct subjects.
func (s *Service) subjects(ctx context.Context, req Request) ([]string, error) {
	n := 0
	for _, set := range []bool{req.Number != "", req.CallSid != "", len(req.CallSids) > 0} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return nil, fmt.Errorf("%w: exactly one of a number, a CallSid or CallSids is required", ErrInvalid)
	case strings.TrimSpace(req.By) == "" || len(req.By) > maxBy:
		return nil, fmt.Errorf("%w: the requester is required (at most %d bytes)", ErrInvalid, maxBy)
	}
	var out []string
	switch {
	case req.CallSid != "":
		if !eventcodec.ValidCallSid(req.CallSid) {
			return nil, fmt.Errorf("%w: %q is not a CallSid", ErrInvalid, req.CallSid)
		}
		legs, err := s.tree(ctx, req.CallSid)
		if err != nil {
			return nil, err
		}
		if legs == nil {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, req.CallSid)
		}
		out = legs
	case len(req.CallSids) > 0:
		for _, sid := range req.CallSids {
			if !eventcodec.ValidCallSid(sid) {
				return nil, fmt.Errorf("%w: %q is not a CallSid", ErrInvalid, sid)
			}
		}
		out = slices.Clone(req.CallSids)
	default:
		party := keystore.NormalizeParty(req.Number)
		if party == "" {
			return nil, fmt.Errorf("%w: the number is empty", ErrInvalid)
		}
		var err error
		if out, err = s.numberSubjects(ctx, party); err != nil {
			return nil, err
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// numberSubjects finds the subjects naming party: the party index's, and
// the read model's calls that name it, each call widened to its tree.
func (s *Service) numberSubjects(ctx context.Context, party string) ([]string, error) {
	indexed, err := s.cfg.Keys.Subjects(ctx, party)
	if err != nil {
		return nil, fmt.Errorf("look the number up in the party index: %w", err)
	}
	named, err := s.cfg.ReadModel.Find(ctx, func(c *callledgerv1.Call) bool {
		for _, p := range []string{c.GetFrom(), c.GetTo(), c.GetForwardedFrom()} {
			if p != "" && keystore.NormalizeParty(p) == party {
				return true
			}
		}
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("look the number up in the read model: %w", err)
	}
	var out []string
	for _, sub := range slices.Concat(indexed, named) {
		out = append(out, sub)
		if !eventcodec.ValidCallSid(sub) || slices.Contains(out[:len(out)-1], sub) {
			continue
		}
		legs, err := s.tree(ctx, sub)
		if err != nil {
			return nil, err
		}
		out = append(out, legs...)
	}
	return out, nil
}

// tree lists the legs of sid's tree; nil when the read model does not
// know sid.
func (s *Service) tree(ctx context.Context, sid string) ([]string, error) {
	t, err := s.cfg.ReadModel.Tree(ctx, sid)
	if errors.Is(err, callstate.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the tree of %s: %w", sid, err)
	}
	legs := make([]string, 0, len(t.Legs))
	for _, l := range t.Legs {
		legs = append(legs, l.GetCallSid())
	}
	if !slices.Contains(legs, sid) {
		legs = append(legs, sid)
	}
	return legs, nil
}

// carryOut journals e (unless it is a replay of the journal), destroys
// its subjects' keys, appends its event and scrubs the read model.
func (s *Service) carryOut(ctx context.Context, e Entry, replay bool) (Result, error) {
	res := Result{ID: e.ID, Subjects: e.Subjects}
	for _, sub := range e.Subjects {
		if eventcodec.ValidCallSid(sub) {
			res.CallSids = append(res.CallSids, sub)
		}
	}
	if !replay {
		if err := s.cfg.Journal.Append(e); err != nil {
			return Result{}, err // nothing done yet
		}
	}
	keys, err := s.cfg.Keys.Destroy(ctx, e.Subjects...)
	if err != nil {
		return res, fmt.Errorf("erasure %s journalled, keys not all destroyed (replaying the journal finishes it): %w", e.ID, err)
	}
	res.Keys = keys
	if replay && keys.Destroyed == 0 && keys.Unknown == 0 {
		return res, nil // every subject was destroyed already: nothing came back
	}
	pos, err := s.record(ctx, e, replay)
	if err != nil {
		return res, fmt.Errorf("erasure %s: keys destroyed, event not recorded (replaying the journal finishes it): %w", e.ID, err)
	}
	res.Position = pos
	if res.PlaintextEvents, err = s.plaintext(ctx, res.CallSids); err != nil {
		return res, fmt.Errorf("erasure %s done; counting the events it could not erase: %w", e.ID, err)
	}
	if replay {
		return res, nil // the caller scrubs once the read model has caught up (Scrub)
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ScrubWait)
	defer cancel()
	if err := s.Scrub(wctx, Pending{ID: e.ID, Position: pos, CallSids: res.CallSids}); err != nil {
		return res, fmt.Errorf("erasure %s done; the read model's files are not scrubbed yet: %w", e.ID, err)
	}
	return res, nil
}

// Pending is an erasure whose calls the read model has still to redact
// and scrub.
type Pending struct {
	ID       string
	Position eventstore.Position
	CallSids []string
}

// record appends the ErasureRecorded of e. Its ID covers the erasure's
// ID: a replay stores it once.
func (s *Service) record(ctx context.Context, e Entry, replay bool) (eventstore.Position, error) {
	ev := Event(e, replay, s.cfg.Now())
	data, err := eventcodec.Encode(ev)
	if err != nil {
		return 0, err
	}
	r, err := s.cfg.Log.Append(ctx, eventcodec.ErasureStream, eventstore.Any(), data)
	if err != nil {
		return 0, err
	}
	return r.Position, nil
}

// Event is the ErasureRecorded of a journal entry, written at now.
func Event(e Entry, replay bool, now time.Time) *callledgerv1.Event {
	body := &callledgerv1.ErasureRecorded{
		ErasureId: e.ID, RequestedBy: e.By, ErasedAt: timestamppb.New(e.At),
		SubjectCount: int32(len(e.Subjects)), Replay: replay,
	}
	for _, sub := range e.Subjects {
		if eventcodec.ValidCallSid(sub) {
			body.CallSids = append(body.CallSids, sub)
		}
	}
	return &callledgerv1.Event{
		EventId:    eventcodec.EventID(eventcodec.IDKindErasure, []byte(e.ID)).String(),
		Source:     callledgerv1.Source_SOURCE_ERASURE,
		ReceivedAt: timestamppb.New(now),
		Body:       &callledgerv1.Event_ErasureRecorded{ErasureRecorded: body},
	}
}

// Scrub waits until the read model has applied p's ErasureRecorded
// (redacted its calls), then scrubs its files.
func (s *Service) Scrub(ctx context.Context, p Pending) error {
	if len(p.CallSids) == 0 {
		return nil
	}
	if err := s.cfg.ReadModel.WaitFor(ctx, p.Position); err != nil {
		return err
	}
	return s.cfg.ReadModel.Scrub(ctx, p.CallSids)
}

// pageSize is how many events plaintext reads of a stream at a time.
const pageSize = 256

// plaintext counts the events of the calls whose personal data is stored
// in the clear.
func (s *Service) plaintext(ctx context.Context, sids []string) (int64, error) {
	var n int64
	for _, sid := range sids {
		for from := uint64(0); ; {
			recs, err := s.cfg.Log.ReadStream(ctx, eventcodec.CallStream(sid), from, pageSize)
			if errors.Is(err, eventstore.ErrStreamNotFound) {
				break
			}
			if err != nil {
				return n, err
			}
			for _, rec := range recs {
				ev, err := eventcodec.Decode(rec)
				if err != nil {
					return n, err
				}
				if PersonalInClear(ev) {
					n++
				}
			}
			if len(recs) < pageSize {
				break
			}
			from = recs[len(recs)-1].Revision + 1
		}
	}
	return n, nil
}

// PersonalInClear reports whether ev holds personal data (docs/PRIVACY.md
// §1) in the clear: a verbatim request, a CloudEvent's bytes, or a
// personal field of its body. A sealed event keeps these empty.
func PersonalInClear(ev *callledgerv1.Event) bool {
	if r := ev.GetRequest(); len(r.GetBody()) > 0 || r.GetUrl() != "" || len(r.GetHeaders()) > 0 || r.GetRemoteAddr() != "" {
		return true
	}
	if len(ev.GetCloudEvent().GetRaw()) > 0 {
		return true
	}
	set := func(fields ...string) bool {
		return slices.ContainsFunc(fields, func(f string) bool { return f != "" })
	}
	switch b := ev.GetBody().(type) {
	case *callledgerv1.Event_CallStatusReported:
		r := b.CallStatusReported
		return set(r.GetFrom(), r.GetTo(), r.GetRecordingUrl(), r.GetCallerName(), r.GetForwardedFrom(), r.GetSipCallId())
	case *callledgerv1.Event_DialCompleted:
		d := b.DialCompleted
		return set(d.GetFrom(), d.GetTo(), d.GetRecordingUrl())
	case *callledgerv1.Event_RecordingStatusReported:
		return set(b.RecordingStatusReported.GetRecordingUrl())
	case *callledgerv1.Event_TranscriptionReported:
		t := b.TranscriptionReported
		return set(t.GetTranscriptionText(), t.GetTranscriptionUrl(), t.GetRecordingUrl())
	case *callledgerv1.Event_CallReconciled:
		r := b.CallReconciled
		return set(r.GetFrom(), r.GetTo()) || len(r.GetResource()) > 0
	case *callledgerv1.Event_HangupFailed:
		return set(b.HangupFailed.GetErrorMessage())
	case *callledgerv1.Event_CallSummaryReported:
		return set(b.CallSummaryReported.GetFrom(), b.CallSummaryReported.GetTo())
	case *callledgerv1.Event_ConferenceEventReported:
		c := b.ConferenceEventReported
		return set(c.GetParticipantLabel(), c.GetFriendlyName(), c.GetParticipantLabelEndingConference())
	}
	return false
}

// ReplayResult is what a replay of the journal did.
type ReplayResult struct {
	// Entries is how many entries the journal holds.
	Entries int
	// Replayed is how many of them found something to destroy again and
	// recorded the erasure again.
	Replayed int
	// Subjects is how many subjects had keys again (or no tombstone).
	Subjects int
	// Pending are the replayed erasures whose calls the read model has
	// still to redact and scrub (Scrub).
	Pending []Pending
}

// ReplayJournal carries out entries of another copy of the journal (one
// fetched from storage after a restore): each is checked, added to this
// server's journal unless it holds it already (so that the next start
// replays it too), and replayed; then the read model is scrubbed.
func (s *Service) ReplayJournal(ctx context.Context, entries []Entry) (ReplayResult, error) {
	for i, e := range entries {
		if err := e.check(); err != nil {
			return ReplayResult{}, fmt.Errorf("%w: entry %d: %v", ErrInvalid, i+1, err)
		}
	}
	for _, e := range entries {
		if !s.cfg.Journal.Has(e.ID) {
			if err := s.cfg.Journal.Append(e); err != nil {
				return ReplayResult{}, err
			}
		}
	}
	res, err := s.Replay(ctx, entries)
	if err != nil {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ScrubWait)
	defer cancel()
	for _, p := range res.Pending {
		if err := s.Scrub(wctx, p); err != nil {
			return res, fmt.Errorf("erasure %s replayed; the read model's files are not scrubbed yet: %w", p.ID, err)
		}
	}
	return res, nil
}

// Replay carries out every entry of the journal again: every subject
// still holding keys (a restored backup's) is destroyed, and, when any
// was, the erasure is recorded again with the entry's ID (the log keeps
// one event per ID). Idempotent: the key store's tombstones make an entry
// already carried out cost one read per subject. It does not wait for the
// read model (which may be rebuilding at start-up): scrub each Pending
// when it can.
func (s *Service) Replay(ctx context.Context, entries []Entry) (ReplayResult, error) {
	res := ReplayResult{Entries: len(entries)}
	for _, e := range entries {
		r, err := s.carryOut(ctx, e, true)
		if err != nil {
			return res, fmt.Errorf("replay erasure %s: %w", e.ID, err)
		}
		if n := r.Keys.Destroyed + r.Keys.Unknown; n > 0 {
			res.Replayed++
			res.Subjects += n
			res.Pending = append(res.Pending, Pending{ID: e.ID, Position: r.Position, CallSids: r.CallSids})
			s.log.InfoContext(ctx, "erasure replayed", "erasure_id", e.ID, "subjects", n, "position", r.Position)
		}
	}
	return res, nil
}
