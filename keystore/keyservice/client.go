package keyservice

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keystorev1 "github.com/callledger/callledger/api/callledger/keystore/v1"
	"github.com/callledger/callledger/keystore"
)

// ErrNotHere: erasures run on the node that holds the key store, not
// through a client.
var ErrNotHere = errors.New("keyservice: erasures run on the node that holds the key store")

// ClientOptions configure a Client.
type ClientOptions struct {
	// CacheSize bounds how many subjects' keys are kept (default
	// keystore.DefaultCacheSize).
	CacheSize int
	// TTL bounds how long a key is used without asking the key store again
	// (default DefaultTTL): a call erased meanwhile is sealed under its
	// destroyed key until then, which no node can open any more.
	TTL time.Duration
	// Now is the clock of the TTL (default time.Now).
	Now func() time.Time
}

// DefaultTTL is ClientOptions.TTL's default.
const DefaultTTL = time.Minute

// callTimeout bounds a call whose context has no deadline (the
// projection's): a connection that drops packets silently then ends in
// ErrUnavailable, which the caller retries, instead of holding it forever.
const callTimeout = 30 * time.Second

// bounded is ctx with callTimeout when it has no deadline of its own.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, callTimeout)
}

// Client is a keystore.Store whose keys come from a key service: Key and
// Get ask it, and keep the answers for a while, so that a call's later
// events cost no call.
type Client struct {
	svc   keystorev1.KeyServiceClient
	cache *lru.Cache[string, *cached]
	ttl   time.Duration
	now   func() time.Time
	seed  maphash.Seed
}

var _ keystore.Store = (*Client)(nil)

// cached is what the client knows of a subject; never changed once cached.
type cached struct {
	at time.Time
	// erased: the service said the subject was erased.
	erased bool
	keys   []keystore.DataKey
	// seen are hashes of the parties Key indexed for the subject; keyed
	// is whether Key answered (Get alone caches a key to open with).
	seen  []uint64
	keyed bool
}

// NewClient is a key store served over conn.
func NewClient(conn grpc.ClientConnInterface, opts ClientOptions) (*Client, error) {
	if opts.CacheSize <= 0 {
		opts.CacheSize = keystore.DefaultCacheSize
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cache, err := lru.New[string, *cached](opts.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("keyservice: %w", err)
	}
	return &Client{svc: keystorev1.NewKeyServiceClient(conn), cache: cache, ttl: opts.TTL, now: opts.Now, seed: maphash.MakeSeed()}, nil
}

// fresh returns what is cached of subject while it is young enough.
func (c *Client) fresh(subject string) (*cached, bool) {
	e, ok := c.cache.Get(subject)
	if !ok || c.now().Sub(e.at) >= c.ttl {
		return nil, false
	}
	return e, true
}

// Key implements keystore.Store: the key service has made the key and its
// index entries durable when it answers.
func (c *Client) Key(ctx context.Context, subject string, parties ...string) (keystore.DataKey, error) {
	hashes := make([]uint64, 0, len(parties))
	for _, p := range parties {
		hashes = append(hashes, maphash.String(c.seed, p))
	}
	if e, ok := c.fresh(subject); ok {
		if e.erased {
			return keystore.DataKey{}, keystore.ErrDestroyed
		}
		if e.keyed && !slices.ContainsFunc(hashes, func(h uint64) bool { return !slices.Contains(e.seen, h) }) {
			return e.keys[0], nil
		}
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	res, err := c.svc.Key(ctx, &keystorev1.KeyRequest{Subject: subject, Parties: parties})
	if err != nil {
		return keystore.DataKey{}, c.failed(subject, err)
	}
	k, err := c.dataKey(subject, res.GetSubject(), res.GetKeyId(), res.GetKey())
	if err != nil {
		return keystore.DataKey{}, err
	}
	seen := hashes
	if e, ok := c.fresh(subject); ok && e.keyed && e.keys[0].ID() == k.ID() {
		seen = append(slices.Clip(e.seen), hashes...)
	}
	c.cache.Add(subject, &cached{at: c.now(), keys: []keystore.DataKey{k}, seen: seen, keyed: true})
	return k, nil
}

// Sync implements keystore.Store: nothing to do, Key's answers are
// durable.
func (c *Client) Sync(context.Context) error { return nil }

// Get implements keystore.Store.
func (c *Client) Get(ctx context.Context, subject string, id uint64) (keystore.DataKey, error) {
	if e, ok := c.fresh(subject); ok {
		if e.erased {
			return keystore.DataKey{}, keystore.ErrDestroyed
		}
		for _, k := range e.keys {
			if k.ID() == id {
				return k, nil
			}
		}
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	res, err := c.svc.GetKey(ctx, &keystorev1.GetKeyRequest{Subject: subject, KeyId: id})
	if err != nil {
		return keystore.DataKey{}, c.failed(subject, err)
	}
	k, err := c.dataKey(subject, res.GetSubject(), res.GetKeyId(), res.GetKey())
	if err != nil {
		return keystore.DataKey{}, err
	}
	if k.ID() != id {
		return keystore.DataKey{}, fmt.Errorf("keyservice: asked for key %016x of %s, got key %016x", id, subject, k.ID())
	}
	c.remember(k)
	return k, nil
}

// Prefetch gets the keys of refs that are not cached, in as few calls as
// GetKeys allows, so that opening a batch of events costs a round trip, not
// one per call leg. A key the service does not have is left for Get to
// report.
func (c *Client) Prefetch(ctx context.Context, refs []keystore.KeyRef) error {
	var want []*keystorev1.KeyRef
	seen := map[keystore.KeyRef]bool{}
	for _, r := range refs {
		if seen[r] {
			continue
		}
		seen[r] = true
		if e, ok := c.fresh(r.Subject); ok && (e.erased || slices.ContainsFunc(e.keys, func(k keystore.DataKey) bool { return k.ID() == r.ID })) {
			continue
		}
		want = append(want, &keystorev1.KeyRef{Subject: r.Subject, KeyId: r.ID})
	}
	for len(want) > 0 {
		n := min(len(want), MaxGetKeys)
		res, err := c.getKeys(ctx, want[:n])
		if err != nil {
			return fromStatus(err)
		}
		want = want[n:]
		for _, sub := range res.GetErased() {
			c.erased(sub)
		}
		for _, ik := range res.GetKeys() {
			k, err := keystore.NewDataKey(ik.GetSubject(), ik.GetKeyId(), ik.GetKey())
			if err != nil {
				return fmt.Errorf("keyservice: %w", err)
			}
			c.remember(k)
		}
	}
	return nil
}

// getKeys is one GetKeys call, bounded as every call is.
func (c *Client) getKeys(ctx context.Context, refs []*keystorev1.KeyRef) (*keystorev1.GetKeysResponse, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return c.svc.GetKeys(ctx, &keystorev1.GetKeysRequest{Keys: refs})
}

// remember caches k, a key Get or Prefetch received, beside what is
// cached of its subject and still fresh (Key's key stays first, as Key
// answers it); a stale entry is replaced.
func (c *Client) remember(k keystore.DataKey) {
	e := &cached{at: c.now(), keys: []keystore.DataKey{k}}
	if old, ok := c.fresh(k.Subject()); ok && !old.erased {
		if slices.ContainsFunc(old.keys, func(o keystore.DataKey) bool { return o.ID() == k.ID() }) {
			return
		}
		e.at, e.keyed, e.seen = old.at, old.keyed, old.seen
		e.keys = append(slices.Clip(old.keys), k)
	}
	c.cache.Add(k.Subject(), e)
}

// erased caches that subject was erased, so that its late events cost no
// call until the entry is stale.
func (c *Client) erased(subject string) { c.cache.Add(subject, &cached{at: c.now(), erased: true}) }

// failed is the key store's error for the service's refusal err of a call
// about subject, remembering an erasure.
func (c *Client) failed(subject string, err error) error {
	err = fromStatus(err)
	if errors.Is(err, keystore.ErrDestroyed) {
		c.erased(subject)
	}
	return err
}

// Subjects implements keystore.Store: ErrNotHere.
func (c *Client) Subjects(context.Context, string) ([]string, error) { return nil, ErrNotHere }

// Destroy implements keystore.Store: ErrNotHere.
func (c *Client) Destroy(context.Context, ...string) (keystore.DestroyResult, error) {
	return keystore.DestroyResult{}, ErrNotHere
}

// Close forgets the cached keys; the connection is its owner's.
func (c *Client) Close() error {
	c.cache.Purge()
	return nil
}

// dataKey is the key the service answered for subject.
func (c *Client) dataKey(subject, got string, id uint64, secret []byte) (keystore.DataKey, error) {
	if got != subject {
		return keystore.DataKey{}, fmt.Errorf("keyservice: asked for a key of %s, got one of %s", subject, got)
	}
	k, err := keystore.NewDataKey(subject, id, secret)
	if err != nil {
		return keystore.DataKey{}, fmt.Errorf("keyservice: %w", err)
	}
	return k, nil
}

// fromStatus maps the service's refusals back to the key store's errors.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("keyservice: %w", err)
	}
	switch reasonOf(st) {
	case reasonErased:
		return keystore.ErrDestroyed
	case reasonNotFound:
		return fmt.Errorf("%w: %s", keystore.ErrNotFound, st.Message())
	}
	if st.Code() == codes.InvalidArgument {
		return fmt.Errorf("keyservice: %w", err) // this request can never be answered
	}
	// Down, slow, busy, or refusing this node (a token or certificate
	// to renew): a later try may be answered, and a reader that took the
	// data for unopenable would fold it without its personal fields for
	// good.
	return fmt.Errorf("keyservice: %w: %s: %s", keystore.ErrUnavailable, st.Code(), st.Message())
}
