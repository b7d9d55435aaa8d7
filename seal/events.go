package seal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"slices"
	"strings"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/keystore"
)

// Events seals the personal fields of events before they are stored and
// opens them when they are read, with the data keys of a key store
// (docs/PRIVACY.md §3). Every writer of the log (the webhook, the hang-up
// command, the reconciler) seals through it, and every reader that shows
// personal data opens through it. A nil *Events seals nothing (a store
// without sealing) and refuses to open a sealed event.
type Events struct {
	keys keystore.Store
	// deferSync: the event store syncs keys before its own commit
	// (DeferSync), so Seal does not.
	deferSync bool
}

// Option changes how Events seals.
type Option func(*Events)

// DeferSync is for writers whose event store runs the key store's Sync
// before every commit of its own (pebblestore.Options.BeforeSync): Seal
// then returns without waiting for the new key to be durable, and the
// first events of many calls share one key store sync instead of waiting
// for one each. Without it, Seal syncs a new key before returning, which
// is right for any store.
func DeferSync() Option { return func(e *Events) { e.deferSync = true } }

// NewEvents seals and opens with keys.
func NewEvents(keys keystore.Store, opts ...Option) *Events {
	e := &Events{keys: keys}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Seal returns ev as it is to be stored: its personal fields moved into
// Sealed parts under a data key of its subject (Subject), the parties it
// names indexed, the rest as it was. ev itself is left unchanged, and its
// event ID must be set: the ciphertext is bound to it. When the subject
// was erased (keystore.ErrDestroyed), the event is stored with its
// personal fields empty: its facts still fold, and no new key is made
// for an erased call.
func (e *Events) Seal(ctx context.Context, ev *callledgerv1.Event) (*callledgerv1.Event, error) {
	if e == nil {
		return ev, nil
	}
	clear, facts, request := eventcodec.Split(ev)
	if facts == nil && request == nil {
		return ev, nil
	}
	return e.sealParts(ctx, ev, Parties(ev), clear, facts, request)
}

// SealOwned is Seal for a writer that has no further use for ev as it
// was: ev's personal fields are moved out rather than copied, so ev
// becomes (and is returned as) the event to store. On an error ev has lost
// its personal fields.
func (e *Events) SealOwned(ctx context.Context, ev *callledgerv1.Event) (*callledgerv1.Event, error) {
	if e == nil {
		return ev, nil
	}
	// The parties are read before the fields they are in move out.
	parties := Parties(ev)
	facts, request := eventcodec.SplitOwned(ev)
	if facts == nil && request == nil {
		return ev, nil
	}
	return e.sealParts(ctx, ev, parties, ev, facts, request)
}

// sealParts seals facts and request, split from ev, into clear.
func (e *Events) sealParts(ctx context.Context, ev *callledgerv1.Event, parties []string, clear, facts, request *callledgerv1.Event) (*callledgerv1.Event, error) {
	subject := Subject(ev)
	key, err := e.keys.Key(ctx, subject, parties...)
	if errors.Is(err, keystore.ErrDestroyed) {
		return clear, nil
	}
	if err != nil {
		return nil, fmt.Errorf("seal event %s: data key of %s: %w", ev.GetEventId(), subject, err)
	}
	if !e.deferSync {
		if err := e.keys.Sync(ctx); err != nil {
			return nil, fmt.Errorf("seal event %s: %w", ev.GetEventId(), err)
		}
	}
	if facts != nil {
		if clear.Sealed, err = Seal(key, Facts, ev.GetEventId(), &callledgerv1.PersonalData{Event: facts}); err != nil {
			return nil, err
		}
	}
	if request != nil {
		if clear.SealedRequest, err = Seal(key, Request, ev.GetEventId(), &callledgerv1.PersonalData{Event: request}); err != nil {
			return nil, err
		}
	}
	return clear, nil
}

// Opened says what Open found.
type Opened struct {
	// Redacted: a part could not be opened because its subject was erased;
	// the event's personal fields of that part stay empty.
	Redacted bool
}

// Open merges the sealed parts of ev that are asked for back into it
// (Facts, Request; both when none is named), and clears them: ev is then
// the event as it was derived. An erased subject leaves the part's fields
// empty and reports Redacted. A key the store never had
// (keystore.ErrNotFound: a lost or wrong key store) and a ciphertext that
// does not open (ErrOpen) are errors, never taken for an erasure. An
// event stored in the clear is left as it is.
func (e *Events) Open(ctx context.Context, ev *callledgerv1.Event, parts ...Part) (Opened, error) {
	var o Opened
	if len(parts) == 0 {
		parts = []Part{Facts, Request}
	}
	for _, part := range parts {
		field := &ev.Sealed
		if part == Request {
			field = &ev.SealedRequest
		}
		s := *field
		if s == nil {
			continue
		}
		if e == nil {
			return o, fmt.Errorf("open %s of event %s: the event is sealed and no key store is configured", part, ev.GetEventId())
		}
		key, err := e.keys.Get(ctx, s.GetSubject(), s.GetKeyId())
		if errors.Is(err, keystore.ErrDestroyed) {
			o.Redacted = true
			*field = nil
			continue
		}
		if err != nil {
			return o, fmt.Errorf("open %s of event %s: %w", part, ev.GetEventId(), err)
		}
		if err := OpenInto(key, part, ev.GetEventId(), s, ev); err != nil {
			return o, err
		}
		*field = nil
	}
	return o, nil
}

// Subject is whose data key seals ev's personal data (docs/PRIVACY.md §2):
// its call leg's CallSid; for a conference callback, the participant's
// call when it names one, else conference:<ConferenceSid>; for an event
// that names no call (quarantine), quarantine:<event ID>, a key per
// request.
func Subject(ev *callledgerv1.Event) string {
	if sid := ev.GetCallSid(); sid != "" {
		return sid
	}
	if c := ev.GetConferenceEventReported(); c != nil {
		if eventcodec.ValidCallSid(c.GetCallSid()) {
			return c.GetCallSid()
		}
		if c.GetConferenceSid() != "" {
			return "conference:" + c.GetConferenceSid()
		}
	}
	return "quarantine:" + ev.GetEventId()
}

// partyParams are the request parameters that name a party.
var partyParams = []string{"From", "To", "Caller", "Called", "ForwardedFrom"}

// Parties are the numbers and identities ev's personal data names, for
// the key store's party index: the body's from, to and forwarded-from, the
// REST resource's forwarded_from, and the From, To, Caller, Called and
// ForwardedFrom parameters of a form request (a quarantined one too).
// keystore normalizes them.
func Parties(ev *callledgerv1.Event) []string {
	var ps []string
	add := func(p ...string) {
		for _, x := range p {
			if x != "" && !slices.Contains(ps, x) {
				ps = append(ps, x)
			}
		}
	}
	switch b := ev.GetBody().(type) {
	case *callledgerv1.Event_CallStatusReported:
		add(b.CallStatusReported.GetFrom(), b.CallStatusReported.GetTo(), b.CallStatusReported.GetForwardedFrom())
	case *callledgerv1.Event_DialCompleted:
		add(b.DialCompleted.GetFrom(), b.DialCompleted.GetTo())
	case *callledgerv1.Event_CallSummaryReported:
		add(b.CallSummaryReported.GetFrom(), b.CallSummaryReported.GetTo())
	case *callledgerv1.Event_CallReconciled:
		add(b.CallReconciled.GetFrom(), b.CallReconciled.GetTo())
		var res struct {
			ForwardedFrom string `json:"forwarded_from"`
		}
		if json.Unmarshal(b.CallReconciled.GetResource(), &res) == nil {
			add(res.ForwardedFrom)
		}
	}
	if req := ev.GetRequest(); req != nil {
		if strings.HasPrefix(req.GetContentType(), "application/x-www-form-urlencoded") {
			add(formParties(string(req.GetBody()))...)
		}
		if _, q, ok := strings.Cut(req.GetUrl(), "?"); ok {
			add(formParties(q)...)
		}
	}
	return ps
}

// formParties returns the party parameters' values of a form-encoded
// string, without decoding the rest.
func formParties(form string) []string {
	var ps []string
	for form != "" {
		var pair string
		pair, form, _ = strings.Cut(form, "&")
		name, value, _ := strings.Cut(pair, "=")
		if !slices.Contains(partyParams, name) {
			continue
		}
		if v, err := url.QueryUnescape(value); err == nil && v != "" {
			ps = append(ps, v)
		}
	}
	return ps
}

// Preload asks the key store, when it can (keystore.Embedded.Preload), to
// read every data key at once for a pass over the whole log, such as a
// rebuild; release ends it. Without such a store it does nothing.
func (e *Events) Preload(ctx context.Context) (release func(), err error) {
	if e == nil {
		return func() {}, nil
	}
	p, ok := e.keys.(interface {
		Preload(ctx context.Context) (func(), error)
	})
	if !ok {
		return func() {}, nil
	}
	return p.Preload(ctx)
}

// Prefetch asks the key store, when it can (keyservice.Client.Prefetch),
// to get the keys that the facts of evs were sealed under in one go, before
// they are opened one by one: a reader of a batch of events over the
// network then waits for one round trip, not one per call leg. Without such
// a store it returns at once, without looking at evs.
func (e *Events) Prefetch(ctx context.Context, evs iter.Seq[*callledgerv1.Event]) error {
	if e == nil {
		return nil
	}
	p, ok := e.keys.(interface {
		Prefetch(ctx context.Context, refs []keystore.KeyRef) error
	})
	if !ok {
		return nil
	}
	var refs []keystore.KeyRef
	for ev := range evs {
		if s := ev.GetSealed(); s != nil {
			refs = append(refs, keystore.KeyRef{Subject: s.GetSubject(), ID: s.GetKeyId()})
		}
	}
	if len(refs) == 0 {
		return nil
	}
	return p.Prefetch(ctx, refs)
}
