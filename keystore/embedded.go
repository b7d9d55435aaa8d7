package keystore

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	keystorev1 "github.com/callledger/callledger/api/callledger/keystore/v1"
	"github.com/callledger/callledger/internal/pebblelog"
	"github.com/callledger/callledger/internal/pebblescrub"
	"github.com/callledger/callledger/internal/privatefs"
)

// The embedded store's keys:
//
//	m                              Meta
//	s <subject> 0x00 k <id:8>      DataKey
//	s <subject> 0x00 p             Parties (the subject's index MACs)
//	s <subject> 0x00 x             Destroyed
//	n <mac[0:2]> <subject> 0x00 <i> the i-th party of subject; value: its whole MAC
//
// A subject's records share a prefix, so destroying it compacts one small
// range. The index key holds 16 bits of a party's MAC only: a Pebble key can
// outlive its record as an SST bound in the MANIFEST, and 16 bits say
// nothing useful about a number (docs/PRIVACY.md §2).
var keyMeta = []byte("m")

const (
	prefixSubject = 's'
	prefixIndex   = 'n'
	recKey        = 'k'
	recParties    = 'p'
	recDestroyed  = 'x'
)

// Additional data of the wrapped secrets: what each is, so that none can
// stand for another.
const (
	adCheck    = "callledger keystore v1 check"
	adIndexKey = "callledger keystore v1 index key"
	adDataKey  = "callledger keystore v1 data key"
)

// Options configure the embedded store.
type Options struct {
	// Logger receives Pebble's messages; nil discards them.
	Logger *slog.Logger
	// CacheSize bounds how many subjects' unwrapped keys are kept in
	// memory (default 32,768).
	CacheSize int
	// Now is the clock of records' times (default time.Now).
	Now func() time.Time
	// FS is the filesystem the store lives on; default the operating
	// system's. Tests crash it (vfs.NewCrashableMem) to see what is
	// durable; Destroy's scrub needs the operating system's.
	FS vfs.FS
}

// blockCacheSize is Pebble's block cache: a million subjects' records are
// about 300 MB, of which the recent calls' are read.
const blockCacheSize = 64 << 20

// DefaultCacheSize is Options.CacheSize's default.
const DefaultCacheSize = 32768

// Embedded is the embedded key store: a Pebble database of its own.
type Embedded struct {
	db       *pebble.DB
	scrub    *pebblescrub.Scrubber
	kek      cipher.AEAD
	indexKey []byte
	now      func() time.Time
	cache    *lru.Cache[string, *entry]
	// cacheSize is the cache's size outside a preload (Options.CacheSize).
	cacheSize int
	seed      maphash.Seed
	// stripes serialize the changes of one subject (creating its key,
	// indexing its parties, destroying it); subjects hash to a stripe.
	stripes [256]sync.Mutex
	// destroying serializes Destroy calls.
	destroying sync.Mutex
	closeOnce  sync.Once
	// preloaded holds the wrapped data key records Preload read, by key
	// without its prefix byte; nil when none.
	preloaded atomic.Pointer[map[string][]byte]
	// written counts Key's unsynced commits, synced how many of them a
	// Sync has covered (only under syncMu): Sync is free when they match.
	written, synced atomic.Uint64
	syncMu          sync.Mutex
}

var _ Store = (*Embedded)(nil)

// entry is what the cache knows of a subject. Entries are never changed
// once cached: a change caches a new one.
type entry struct {
	destroyed bool
	keys      []DataKey
	// parties are the MACs already indexed; partial when not read (an
	// entry Get cached).
	parties [][]byte
	partial bool
	// seen are hashes of party strings, as Key was given them, known to be
	// indexed: a known call's next event costs no MAC.
	seen []uint64
}

func (e *entry) knows(h uint64) bool { return slices.Contains(e.seen, h) }

func (e *entry) key(id uint64) (DataKey, bool) {
	for _, k := range e.keys {
		if k.id == id {
			return k, true
		}
	}
	return DataKey{}, false
}

func (e *entry) indexed(mac []byte) bool {
	return slices.ContainsFunc(e.parties, func(m []byte) bool { return bytes.Equal(m, mac) })
}

// Open opens (creating it when absent) the embedded key store in dir,
// whose keys are wrapped by kek. A store created with another KEK is
// refused with ErrWrongKEK; one whose KEK rotation was interrupted, with
// ErrRotating.
func Open(dir string, kek KEK, opts Options) (*Embedded, error) {
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	kekAEAD, err := newAEAD(kek.key[:])
	if err != nil {
		return nil, err
	}
	s := &Embedded{kek: kekAEAD, now: opts.Now, seed: maphash.MakeSeed()}
	if s.db, s.scrub, err = openDB(dir, opts); err != nil {
		return nil, err
	}
	s.cacheSize = opts.CacheSize
	if s.cache, err = lru.New[string, *entry](opts.CacheSize); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("key store: %w", err)
	}
	if err := s.loadMeta(kek); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("key store %s: %w", dir, err)
	}
	return s, nil
}

// openDB opens the store's Pebble database in dir, creating it when
// absent, with the scrubber that makes its deletions physical.
func openDB(dir string, opts Options) (*pebble.DB, *pebblescrub.Scrubber, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Files 0600 whatever the umask, as every Pebble of the data directory.
	fs := privatefs.Pebble(vfs.Default)
	if opts.FS != nil {
		fs = opts.FS
	}
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("key store: %w", err)
	}
	po := &pebble.Options{Logger: pebblelog.New(log.With("db", "keys"), 0), CacheSize: blockCacheSize, FS: fs}
	for i := range po.Levels {
		// Opening an event of a call not cached is a point read.
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	scrub := pebblescrub.New(dir, po)
	var db *pebble.DB
	err := pebblelog.Catch(func() (err error) {
		db, err = pebble.Open(dir, po)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("key store %s: %w", dir, err)
	}
	return db, scrub, nil
}

// loadMeta checks the KEK against the store's Meta and unwraps the index
// key, making both when the store is new.
func (s *Embedded) loadMeta(kek KEK) error {
	m, err := readMeta(s.db)
	if errors.Is(err, errNoMeta) {
		return s.createMeta(kek)
	}
	if err != nil {
		return err
	}
	if from := m.GetRotatingFrom(); len(from) > 0 {
		return fmt.Errorf("%w: from key %s to key %s; run callledger rekey again with both to finish it", ErrRotating, hex.EncodeToString(from), hex.EncodeToString(m.GetKekId()))
	}
	if !bytes.Equal(m.GetKekId(), kek.id()) {
		return fmt.Errorf("%w: the store's key is %s, --kek-file holds key %s", ErrWrongKEK, hex.EncodeToString(m.GetKekId()), kek.ID())
	}
	if _, err := s.unwrap(m.GetCheck(), []byte(adCheck)); err != nil {
		return fmt.Errorf("%w: its check value does not open", ErrWrongKEK)
	}
	if s.indexKey, err = s.unwrap(m.GetIndexKey(), []byte(adIndexKey)); err != nil {
		return fmt.Errorf("index key: %w", err)
	}
	return nil
}

func (s *Embedded) createMeta(kek KEK) error {
	s.indexKey = make([]byte, 32)
	if _, err := rand.Read(s.indexKey); err != nil {
		return err
	}
	m, err := sealedMeta(s.kek, kek.id(), s.indexKey, timestamppb.New(s.now()))
	if err != nil {
		return err
	}
	return writeMeta(s.db, m)
}

// sealedMeta is the Meta of a store whose KEK is kek (identified by
// kekID) and whose index key is indexKey: the check value and the index
// key wrapped under kek.
func sealedMeta(kek cipher.AEAD, kekID, indexKey []byte, created *timestamppb.Timestamp) (*keystorev1.Meta, error) {
	check, err := wrapWith(kek, []byte("callledger"), []byte(adCheck))
	if err != nil {
		return nil, err
	}
	index, err := wrapWith(kek, indexKey, []byte(adIndexKey))
	if err != nil {
		return nil, err
	}
	return &keystorev1.Meta{KekId: kekID, Check: check, IndexKey: index, CreatedAt: created}, nil
}

// errNoMeta: the database has no Meta record (a new store, or not one).
var errNoMeta = errors.New("no meta record")

func readMeta(db *pebble.DB) (*keystorev1.Meta, error) {
	v, closer, err := db.Get(keyMeta)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, errNoMeta
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	var m keystorev1.Meta
	if err := proto.Unmarshal(v, &m); err != nil {
		return nil, fmt.Errorf("meta record: %w", err)
	}
	return &m, nil
}

func writeMeta(db *pebble.DB, m *keystorev1.Meta) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return db.Set(keyMeta, b, pebble.Sync)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	return aead, nil
}

func (s *Embedded) wrap(secret, ad []byte) (*keystorev1.Wrapped, error) {
	return wrapWith(s.kek, secret, ad)
}

func (s *Embedded) unwrap(w *keystorev1.Wrapped, ad []byte) ([]byte, error) {
	return unwrapWith(s.kek, w, ad)
}

// wrapWith encrypts secret under the key-encryption key kek.
func wrapWith(kek cipher.AEAD, secret, ad []byte) (*keystorev1.Wrapped, error) {
	nonce := make([]byte, kek.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	return &keystorev1.Wrapped{Nonce: nonce, Ciphertext: kek.Seal(nil, nonce, secret, ad)}, nil
}

// unwrapWith decrypts w, a secret wrapped under kek.
func unwrapWith(kek cipher.AEAD, w *keystorev1.Wrapped, ad []byte) ([]byte, error) {
	if len(w.GetNonce()) != kek.NonceSize() {
		return nil, errors.New("key store: malformed wrapped key")
	}
	b, err := kek.Open(nil, w.GetNonce(), w.GetCiphertext(), ad)
	if err != nil {
		return nil, errors.New("key store: a wrapped key does not open under the key-encryption key")
	}
	return b, nil
}

func dataKeyAD(subject string, id uint64) []byte {
	ad := make([]byte, 0, len(adDataKey)+1+len(subject)+1+8)
	ad = append(ad, adDataKey...)
	ad = append(ad, 0)
	ad = append(ad, subject...)
	ad = append(ad, 0)
	return binary.BigEndian.AppendUint64(ad, id)
}

func subjectPrefix(subject string) []byte {
	k := make([]byte, 0, 1+len(subject)+1+1+8)
	k = append(k, prefixSubject)
	k = append(k, subject...)
	return append(k, 0)
}

// subjectEnd is the first key after every record of subject.
func subjectEnd(subject string) []byte {
	k := subjectPrefix(subject)
	k[len(k)-1] = 1
	return k
}

// prefixEnd is the first key after every key that starts with p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // every key
}

func subjectKey(subject string, rec byte) []byte { return append(subjectPrefix(subject), rec) }

func dataKeyKey(subject string, id uint64) []byte {
	return binary.BigEndian.AppendUint64(subjectKey(subject, recKey), id)
}

// dataKeySubject is the subject of k when k is the key of a data key
// record (s <subject> 0x00 k <id:8>), without copying.
func dataKeySubject(k []byte) ([]byte, bool) {
	i := bytes.IndexByte(k, 0)
	if len(k) == 0 || k[0] != prefixSubject || i < 0 || len(k) != i+2+8 || k[i+1] != recKey {
		return nil, false
	}
	return k[1:i], true
}

func indexKey(mac []byte, subject string, i int) []byte {
	k := make([]byte, 0, 3+len(subject)+2)
	k = append(k, prefixIndex, mac[0], mac[1])
	k = append(k, subject...)
	return append(k, 0, byte(i))
}

// mac is the index's MAC of a party.
func (s *Embedded) mac(party string) []byte {
	m := hmac.New(sha256.New, s.indexKey)
	m.Write([]byte(party))
	return m.Sum(nil)
}

func (s *Embedded) stripe(subject string) *sync.Mutex { return &s.stripes[s.stripeOf(subject)] }

func (s *Embedded) stripeOf(subject string) int {
	return int(maphash.String(s.seed, subject) % uint64(len(s.stripes)))
}

// maxParties bounds the parties indexed per subject (the index entry's
// number is one byte): a call names a handful.
const maxParties = 255

// Key implements Store.
func (s *Embedded) Key(ctx context.Context, subject string, parties ...string) (DataKey, error) {
	if err := checkSubject(subject); err != nil {
		return DataKey{}, err
	}
	var hashes [8]uint64
	seen := hashes[:0]
	for _, p := range parties {
		seen = append(seen, maphash.String(s.seed, p))
	}
	if e, ok := s.cache.Get(subject); ok {
		if e.destroyed {
			return DataKey{}, ErrDestroyed
		}
		if len(e.keys) > 0 && !e.partial && !slices.ContainsFunc(seen, func(h uint64) bool { return !e.knows(h) }) {
			return e.keys[0], nil
		}
	}
	var macs [][]byte
	for _, p := range parties {
		if p = NormalizeParty(p); p == "" {
			continue
		}
		m := s.mac(p)
		if !slices.ContainsFunc(macs, func(x []byte) bool { return bytes.Equal(x, m) }) {
			macs = append(macs, m)
		}
	}
	mu := s.stripe(subject)
	mu.Lock()
	defer mu.Unlock()
	e, err := s.loadForKey(subject)
	if err != nil {
		return DataKey{}, err
	}
	if e.destroyed {
		return DataKey{}, ErrDestroyed
	}
	next := &entry{keys: e.keys, parties: e.parties, seen: e.seen}
	b := s.db.NewBatch()
	defer b.Close()
	// A subject's first key is written with its Parties record, even an
	// empty one: loadForKey takes a subject without one for new.
	added := len(next.keys) == 0
	if len(next.keys) == 0 {
		k, rec, err := s.newDataKey(subject)
		if err != nil {
			return DataKey{}, err
		}
		if err := b.Set(dataKeyKey(subject, k.id), rec, nil); err != nil {
			return DataKey{}, err
		}
		next.keys = []DataKey{k}
	}
	for _, m := range macs {
		if next.indexed(m) {
			continue
		}
		if len(next.parties) >= maxParties {
			return DataKey{}, fmt.Errorf("key store: subject %s names more than %d parties", subject, maxParties)
		}
		if err := b.Set(indexKey(m, subject, len(next.parties)), m, nil); err != nil {
			return DataKey{}, err
		}
		next.parties = append(slices.Clip(next.parties), m)
		added = true
	}
	if added {
		rec, err := proto.Marshal(&keystorev1.Parties{Macs: next.parties})
		if err != nil {
			return DataKey{}, err
		}
		if err := b.Set(subjectKey(subject, recParties), rec, nil); err != nil {
			return DataKey{}, err
		}
	}
	if !b.Empty() {
		if err := ctx.Err(); err != nil {
			return DataKey{}, err
		}
		// Not synced here: Sync covers it, once for every call that began
		// since the last, before anything sealed under the key is durable.
		if err := b.Commit(pebble.NoSync); err != nil {
			return DataKey{}, fmt.Errorf("key store: %w", err)
		}
		s.written.Add(1)
	}
	for _, h := range seen {
		if !next.knows(h) && len(next.seen) < maxParties {
			next.seen = append(slices.Clip(next.seen), h)
		}
	}
	s.cache.Add(subject, next)
	return next.keys[0], nil
}

// Sync implements Store. Concurrent callers share one sync of the store's
// WAL, which covers every commit before it; it costs an atomic load when
// Key has written nothing since the last. (Syncing in the background as
// soon as Key writes was tried: the key store's fsyncs, several per group
// commit, then slowed the ledger's on the same disk, and 5,000 webhooks/s
// collapsed: docs/BENCHMARKS.md §10.)
func (s *Embedded) Sync(ctx context.Context) error {
	w := s.written.Load()
	if s.synced.Load() >= w {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced.Load() >= w {
		return nil // a sync that began after our writes covered them
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w = s.written.Load() // every commit counted here is in the WAL already
	if err := pebblelog.Catch(func() error { return s.db.LogData(nil, pebble.Sync) }); err != nil {
		return fmt.Errorf("key store: sync: %w", err)
	}
	s.synced.Store(w)
	return nil
}

func (s *Embedded) newDataKey(subject string) (DataKey, []byte, error) {
	var raw [32]byte
	var idb [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return DataKey{}, nil, fmt.Errorf("key store: %w", err)
	}
	if _, err := rand.Read(idb[:]); err != nil {
		return DataKey{}, nil, fmt.Errorf("key store: %w", err)
	}
	id := binary.BigEndian.Uint64(idb[:])
	defer clear(raw[:])
	aead, err := newAEAD(raw[:])
	if err != nil {
		return DataKey{}, nil, err
	}
	w, err := s.wrap(raw[:], dataKeyAD(subject, id))
	if err != nil {
		return DataKey{}, nil, err
	}
	rec, err := proto.Marshal(&keystorev1.DataKey{KeyId: id, Key: w, CreatedAt: timestamppb.New(s.now())})
	if err != nil {
		return DataKey{}, nil, err
	}
	return DataKey{subject: subject, id: id, aead: aead, secret: bytes.Clone(raw[:])}, rec, nil
}

// loadForKey is load for Key, which meets mostly new calls: a subject has
// keys only if it has a Parties record (Key writes one with its first
// key), so two point reads, mostly answered by the bloom filters, tell a
// new subject, where load's scan of its range seeks every level. A
// subject whose keys were made before Parties records were always written
// and that names no party may get a second key: a subject may have
// several, and erasure destroys them all.
func (s *Embedded) loadForKey(subject string) (*entry, error) {
	if e, ok := s.cache.Get(subject); ok && !e.partial {
		return e, nil
	}
	for _, rec := range []byte{recDestroyed, recParties} {
		_, closer, err := s.db.Get(subjectKey(subject, rec))
		if err == nil {
			closer.Close()
			return s.load(subject)
		}
		if !errors.Is(err, pebble.ErrNotFound) {
			return nil, fmt.Errorf("key store: %w", err)
		}
	}
	return &entry{}, nil
}

// load returns what the store holds of subject (its keys and index MACs),
// from the cache when it is there whole.
func (s *Embedded) load(subject string) (*entry, error) {
	if e, ok := s.cache.Get(subject); ok && !e.partial {
		return e, nil
	}
	e := &entry{}
	prefix := subjectPrefix(subject)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: subjectEnd(subject)})
	if err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()[len(prefix):]
		if len(k) == 0 {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("key store: %w", err)
		}
		switch k[0] {
		case recDestroyed:
			e = &entry{destroyed: true}
			s.cache.Add(subject, e)
			return e, nil
		case recKey:
			var rec keystorev1.DataKey
			if err := proto.Unmarshal(v, &rec); err != nil {
				return nil, fmt.Errorf("key store: data key of %s: %w", subject, err)
			}
			k, err := s.unwrapDataKey(subject, &rec)
			if err != nil {
				return nil, err
			}
			e.keys = append(e.keys, k)
		case recParties:
			var rec keystorev1.Parties
			if err := proto.Unmarshal(v, &rec); err != nil {
				return nil, fmt.Errorf("key store: parties of %s: %w", subject, err)
			}
			e.parties = rec.GetMacs()
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	if len(e.keys) > 0 {
		s.cache.Add(subject, e)
	}
	return e, nil
}

// Get implements Store. It reads the one record it needs: opening an
// event of a call not cached (a rebuild meets each call once) is a point
// read and an unwrap.
func (s *Embedded) Get(ctx context.Context, subject string, id uint64) (DataKey, error) {
	if err := checkSubject(subject); err != nil {
		return DataKey{}, err
	}
	if e, ok := s.cache.Get(subject); ok {
		if e.destroyed {
			return DataKey{}, ErrDestroyed
		}
		if k, ok := e.key(id); ok {
			return k, nil
		}
	}
	var rec keystorev1.DataKey
	if v := s.preloadedRecord(subject, id); v != nil {
		err := proto.Unmarshal(v, &rec)
		if err != nil {
			return DataKey{}, fmt.Errorf("key store: data key of %s: %w", subject, err)
		}
	} else {
		v, closer, err := s.db.Get(dataKeyKey(subject, id))
		if errors.Is(err, pebble.ErrNotFound) {
			return DataKey{}, s.missing(subject, id)
		}
		if err != nil {
			return DataKey{}, fmt.Errorf("key store: %w", err)
		}
		err = proto.Unmarshal(v, &rec)
		closer.Close()
		if err != nil {
			return DataKey{}, fmt.Errorf("key store: data key of %s: %w", subject, err)
		}
	}
	k, err := s.unwrapDataKey(subject, &rec)
	if err != nil {
		return DataKey{}, err
	}
	// Cached only when nothing else is: a whole entry (Key's) is not
	// replaced by a partial one.
	s.cache.ContainsOrAdd(subject, &entry{keys: []DataKey{k}, partial: true})
	return k, nil
}

// missing tells an erased subject from a key the store never had.
func (s *Embedded) missing(subject string, id uint64) error {
	_, closer, err := s.db.Get(subjectKey(subject, recDestroyed))
	switch {
	case err == nil:
		closer.Close()
		s.cache.Add(subject, &entry{destroyed: true})
		return ErrDestroyed
	case errors.Is(err, pebble.ErrNotFound):
		return fmt.Errorf("%w: subject %s, key %016x", ErrNotFound, subject, id)
	default:
		return fmt.Errorf("key store: %w", err)
	}
}

func (s *Embedded) unwrapDataKey(subject string, rec *keystorev1.DataKey) (DataKey, error) {
	raw, err := s.unwrap(rec.GetKey(), dataKeyAD(subject, rec.GetKeyId()))
	if err != nil {
		return DataKey{}, fmt.Errorf("%w (subject %s)", err, subject)
	}
	aead, err := newAEAD(raw)
	if err != nil {
		return DataKey{}, err
	}
	return DataKey{subject: subject, id: rec.GetKeyId(), aead: aead, secret: raw}, nil
}

// Subjects implements Store.
func (s *Embedded) Subjects(ctx context.Context, party string) ([]string, error) {
	party = NormalizeParty(party)
	if party == "" {
		return nil, nil
	}
	m := s.mac(party)
	prefix := []byte{prefixIndex, m[0], m[1]}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("key store: %w", err)
		}
		if !hmac.Equal(v, m) {
			continue
		}
		k := it.Key()[3:]
		if i := bytes.IndexByte(k, 0); i > 0 {
			sub := string(k[:i])
			if len(out) == 0 || out[len(out)-1] != sub {
				out = append(out, sub)
			}
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	return out, nil
}

// wholeRangeOver is how many subjects Destroy compacts one by one; beyond
// it compacts the whole key space once.
const wholeRangeOver = 64

// Destroy implements Store.
func (s *Embedded) Destroy(ctx context.Context, subjects ...string) (DestroyResult, error) {
	var res DestroyResult
	for _, sub := range subjects {
		if err := checkSubject(sub); err != nil {
			return res, err
		}
	}
	subjects = slices.Compact(slices.Sorted(slices.Values(subjects)))
	s.destroying.Lock()
	defer s.destroying.Unlock()
	// A preload holds wrapped keys: the destroyed ones must not be served
	// from it.
	s.preloaded.Store(nil)

	// Hold the subjects' stripes while their records change, so that a
	// concurrent Key cannot make a key in between; in stripe order, which
	// every holder of several follows.
	var held []int
	for _, sub := range subjects {
		held = append(held, s.stripeOf(sub))
	}
	held = slices.Compact(slices.Sorted(slices.Values(held)))
	for _, i := range held {
		s.stripes[i].Lock()
	}
	var ranges []pebble.KeyRange
	res, err := s.deleteSubjects(subjects, &ranges)
	for _, i := range held {
		s.stripes[i].Unlock()
	}
	if err != nil {
		return res, err
	}
	if len(subjects) > wholeRangeOver {
		ranges = []pebble.KeyRange{{Start: []byte{0}, End: []byte{0xff}}}
	}
	if err := s.scrub.Scrub(ctx, s.db, ranges); err != nil {
		return res, fmt.Errorf("key store: keys deleted, not yet removed from every file: %w", err)
	}
	return res, nil
}

// deleteSubjects writes, in one synced batch, the deletion of the subjects'
// keys and index entries and their Destroyed records, and caches them as
// destroyed. It appends the key ranges to scrub.
func (s *Embedded) deleteSubjects(subjects []string, ranges *[]pebble.KeyRange) (DestroyResult, error) {
	var res DestroyResult
	b := s.db.NewBatch()
	defer b.Close()
	tomb, err := proto.Marshal(&keystorev1.Destroyed{DestroyedAt: timestamppb.New(s.now())})
	if err != nil {
		return res, err
	}
	for _, sub := range subjects {
		s.cache.Remove(sub)
		e, err := s.load(sub)
		if err != nil {
			return res, err
		}
		switch {
		case e.destroyed:
			res.AlreadyDestroyed++
			continue
		case len(e.keys) == 0:
			res.Unknown++
		default:
			res.Destroyed++
		}
		prefix, end := subjectPrefix(sub), subjectEnd(sub)
		// Every record of the subject, the Destroyed record then written
		// over the range: a range deletion covers what this process has not
		// read (a key another process made).
		if err := b.DeleteRange(prefix, end, nil); err != nil {
			return res, err
		}
		for i, m := range e.parties {
			if err := b.Delete(indexKey(m, sub, i), nil); err != nil {
				return res, err
			}
			k := indexKey(m, sub, i)
			*ranges = append(*ranges, pebble.KeyRange{Start: k, End: append(bytes.Clone(k), 0)})
		}
		if err := b.Set(subjectKey(sub, recDestroyed), tomb, nil); err != nil {
			return res, err
		}
		*ranges = append(*ranges, pebble.KeyRange{Start: prefix, End: end})
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return res, fmt.Errorf("key store: %w", err)
	}
	for _, sub := range subjects {
		s.cache.Add(sub, &entry{destroyed: true})
	}
	return res, nil
}

// Close closes the store; later calls do nothing.
func (s *Embedded) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.cache.Purge()
		err = s.db.Close()
	})
	return err
}
