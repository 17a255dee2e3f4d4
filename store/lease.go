package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Lease is the executor lease: who leads, under which epoch, and which token
// generation is the real token.
//
// Liveness is judged by observers on their own monotonic clocks: a lease is
// live while Renewals keeps changing within the TTL. No two machines' wall
// clocks are compared, so clock skew cannot shorten a lease.
//
// # Storage
//
// The lease is a chain of documents in the lease collection, each created by
// an insert with a unique _id, because an insert of a duplicate key is the one
// compare-and-set that every MongoDB-compatible server performs atomically
// (FerretDB's conditional updates read and then write, with no atomicity).
//
//   - "epoch/N" records who acquired epoch N, with which token generation.
//   - "slot/N/k" is the k-th state change of epoch N: a renewal or release by
//     the holder, a takeover by the next holder, or a token re-insert by a
//     watchdog. A holder renewing and a successor taking over race for the
//     same slot, so exactly one of them wins.
//   - "tokengen/G" marks generation G as issued.
//   - "head" is a hint of the latest epoch, slot and generation, so that
//     readers probe forward from it instead of scanning.
type Lease struct {
	Holder     string    `json:"holder"`
	Datacenter string    `json:"datacenter"`
	Epoch      int64     `json:"epoch"`
	TokenGen   int64     `json:"token_gen"`
	Renewals   int64     `json:"renewals"`
	Released   bool      `json:"released"`
	Since      time.Time `json:"since"`
	RenewedAt  time.Time `json:"renewed_at"`
	// Watermark is the executor's promise that every tick scheduled at or
	// before it has been claimed or recorded. The next executor catches up
	// from here.
	Watermark time.Time `json:"watermark"`
}

// Held reports whether the lease names a holder that has not released it.
func (l Lease) Held() bool { return l.Holder != "" && !l.Released }

// Fence identifies the executor epoch a write is made under.
type Fence struct {
	Epoch  int64
	Holder string
}

// Fence returns the fence of this lease.
func (l Lease) Fence() Fence { return Fence{Epoch: l.Epoch, Holder: l.Holder} }

// Slot kinds.
const (
	slotRenew    = "renew"
	slotRelease  = "release"
	slotTakeover = "takeover"
	slotReinsert = "reinsert"
)

type leaseDoc struct {
	ID         string    `bson:"_id"`
	Kind       string    `bson:"kind,omitempty"`
	Holder     string    `bson:"holder,omitempty"`
	Datacenter string    `bson:"dc,omitempty"`
	TokenGen   int64     `bson:"token_gen,omitempty"`
	Nonce      string    `bson:"nonce,omitempty"`
	At         time.Time `bson:"at"`
	Watermark  time.Time `bson:"watermark"`
	// head only
	Epoch int64 `bson:"epoch,omitempty"`
	Slot  int64 `bson:"slot,omitempty"`
}

const headID = "head"

func epochID(n int64) string    { return fmt.Sprintf("epoch/%d", n) }
func slotID(n, k int64) string  { return fmt.Sprintf("slot/%d/%d", n, k) }
func tokenGenID(g int64) string { return fmt.Sprintf("tokengen/%d", g) }

// ends reports whether the slot ends its epoch.
func (d *leaseDoc) ends() bool {
	return d.Kind == slotRelease || d.Kind == slotTakeover || d.Kind == slotReinsert
}

// leaseCache remembers the newest chain position this process has seen, so
// most reads start at the end of the chain.
type leaseCache struct {
	mu                    sync.Mutex
	epoch, slot, tokenGen int64
	// verified is the latest chain position at which a full read found the
	// lease held, unreleased, by verified.holder. Every change of the lease
	// (renewal, release, takeover, re-insert) claims the epoch's next slot,
	// so while slot verified.slot+1 does not exist the lease is unchanged.
	verified struct {
		epoch, slot int64
		holder      string
	}
}

// verifiedAt returns the slot at which f was last verified as the live
// lease, if it was.
func (c *leaseCache) verifiedAt(f Fence) (slot int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.verified
	return v.slot, v.holder != "" && v.epoch == f.Epoch && v.holder == f.Holder
}

func (c *leaseCache) verify(f Fence, slot int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := &c.verified
	if v.epoch != f.Epoch || v.holder != f.Holder || slot > v.slot {
		v.epoch, v.slot, v.holder = f.Epoch, slot, f.Holder
	}
}

func (c *leaseCache) get() (int64, int64, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch, c.slot, c.tokenGen
}

func (c *leaseCache) put(epoch, slot, gen int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch > c.epoch || (epoch == c.epoch && slot > c.slot) {
		c.epoch, c.slot = epoch, slot
	}
	c.tokenGen = max(c.tokenGen, gen)
}

func (s *Store) getLeaseDoc(ctx context.Context, id string) (*leaseDoc, error) {
	var d leaseDoc
	err := s.lease.FindOne(ctx, bson.M{"_id": id}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// insertLeaseDoc inserts d; it reports false if the _id was taken.
func (s *Store) insertLeaseDoc(ctx context.Context, d leaseDoc) (bool, error) {
	_, err := s.lease.InsertOne(ctx, d)
	if isDuplicateKey(err) {
		return false, nil
	}
	return err == nil, err
}

// EnsureLease creates the start of the chain if it does not exist. It is
// idempotent and safe to race.
func (s *Store) EnsureLease(ctx context.Context) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	for _, d := range []leaseDoc{{ID: epochID(0)}, {ID: tokenGenID(0)}, {ID: headID}} {
		if _, err := s.insertLeaseDoc(ctx, d); err != nil {
			return fmt.Errorf("store: ensure lease: %w", err)
		}
	}
	return nil
}

// Lease reads the current lease.
func (s *Store) Lease(ctx context.Context) (Lease, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	l, err := s.readLease(ctx)
	if err != nil {
		return Lease{}, fmt.Errorf("store: read lease: %w", err)
	}
	return l, nil
}

func (s *Store) readLease(ctx context.Context) (Lease, error) {
	n, k, g := s.cache.get()
	if head, err := s.getLeaseDoc(ctx, headID); err != nil {
		return Lease{}, err
	} else if head != nil && (head.Epoch > n || (head.Epoch == n && head.Slot > k)) {
		n, k = head.Epoch, head.Slot
		g = max(g, head.TokenGen)
	}
	// Probe forward to the newest epoch, its newest slot, and the newest
	// generation. Each probe is a lookup by _id.
	for {
		d, err := s.getLeaseDoc(ctx, epochID(n+1))
		if err != nil {
			return Lease{}, err
		}
		if d == nil {
			break
		}
		n, k = n+1, 0
	}
	ep, err := s.getLeaseDoc(ctx, epochID(n))
	if err != nil {
		return Lease{}, err
	}
	if ep == nil {
		return Lease{}, fmt.Errorf("lease: %w (call EnsureLease first)", ErrNotFound)
	}
	var last *leaseDoc
	for {
		d, err := s.getLeaseDoc(ctx, slotID(n, k+1))
		if err != nil {
			return Lease{}, err
		}
		if d == nil {
			break
		}
		last, k = d, k+1
	}
	if last == nil && k > 0 {
		if last, err = s.getLeaseDoc(ctx, slotID(n, k)); err != nil {
			return Lease{}, err
		}
	}
	for {
		d, err := s.getLeaseDoc(ctx, tokenGenID(g+1))
		if err != nil {
			return Lease{}, err
		}
		if d == nil {
			break
		}
		g++
	}
	// A re-insert slot carries the generation it issues, and an epoch the
	// generation it was acquired with: either may be ahead of the
	// generation documents for a moment, and readers must already see it.
	g = max(g, ep.TokenGen)
	if last != nil {
		g = max(g, last.TokenGen)
	}
	s.cache.put(n, k, g)
	l := Lease{Holder: ep.Holder, Datacenter: ep.Datacenter, Epoch: n, TokenGen: g, Renewals: k,
		Since: ep.At, RenewedAt: ep.At, Watermark: ep.Watermark, Released: ep.Holder == ""}
	if last != nil {
		l.RenewedAt = last.At
		if last.Watermark.After(l.Watermark) {
			l.Watermark = last.Watermark
		}
		l.Released = l.Released || last.ends()
	}
	return l, nil
}

// advance claims the next slot of l's epoch. It reports false if another
// party claimed it first. A retried insert of our own slot (the reply to the
// first one was lost) is recognised by its nonce.
func (s *Store) advance(ctx context.Context, l Lease, d leaseDoc) (bool, error) {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	d.ID, d.Nonce = slotID(l.Epoch, l.Renewals+1), hex.EncodeToString(nonce[:])
	for attempt := 0; ; attempt++ {
		ok, err := s.insertLeaseDoc(ctx, d)
		if err == nil && !ok && attempt > 0 {
			mine, gerr := s.getLeaseDoc(ctx, d.ID)
			if gerr != nil {
				return false, gerr
			}
			ok = mine != nil && mine.Nonce == d.Nonce
		}
		if err == nil || attempt == 1 || !IsUnavailable(err) {
			if ok {
				s.cache.put(l.Epoch, l.Renewals+1, 0)
				s.writeHint(ctx)
			}
			return ok, err
		}
	}
}

// writeHint records the newest known position in the head document. It is
// only a hint; readers probe past it.
func (s *Store) writeHint(ctx context.Context) {
	n, k, g := s.cache.get()
	_, _ = s.lease.UpdateOne(ctx, bson.M{"_id": headID},
		bson.M{"$set": bson.M{"epoch": n, "slot": k, "token_gen": g, "at": time.Now().UTC()}},
		options.UpdateOne().SetUpsert(true))
}

// AcquireLease makes holder the executor under the next epoch, provided the
// lease is still exactly as observed (its holder has neither renewed nor
// released since) and tokenGen is the current token generation.
func (s *Store) AcquireLease(ctx context.Context, observed Lease, holder, datacenter string, tokenGen int64, now time.Time) (Lease, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if observed.TokenGen != tokenGen {
		return Lease{}, fmt.Errorf("store: acquire lease with token generation %d (current %d): %w", tokenGen, observed.TokenGen, ErrLeaseConflict)
	}
	ok, err := s.advance(ctx, observed, leaseDoc{Kind: slotTakeover, Holder: holder, At: now, Watermark: observed.Watermark})
	if err != nil {
		return Lease{}, fmt.Errorf("store: acquire lease after epoch %d: %w", observed.Epoch, err)
	}
	if !ok {
		return Lease{}, fmt.Errorf("store: acquire lease after epoch %d: %w", observed.Epoch, ErrLeaseConflict)
	}
	next := observed.Epoch + 1
	ok, err = s.insertLeaseDoc(ctx, leaseDoc{ID: epochID(next), Holder: holder, Datacenter: datacenter, TokenGen: tokenGen, At: now, Watermark: observed.Watermark})
	if err != nil {
		return Lease{}, fmt.Errorf("store: acquire epoch %d: %w", next, err)
	}
	if !ok {
		return Lease{}, fmt.Errorf("store: acquire epoch %d: %w", next, ErrLeaseConflict)
	}
	s.cache.put(next, 0, tokenGen)
	s.writeHint(ctx)
	return Lease{Holder: holder, Datacenter: datacenter, Epoch: next, TokenGen: tokenGen, Since: now, RenewedAt: now, Watermark: observed.Watermark}, nil
}

// RenewLease extends the lease of l's holder and records its watermark. It
// fails with ErrStaleEpoch if l is no longer the current lease.
func (s *Store) RenewLease(ctx context.Context, l Lease, watermark, now time.Time) (Lease, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if watermark.Before(l.Watermark) {
		watermark = l.Watermark
	}
	ok, err := s.advance(ctx, l, leaseDoc{Kind: slotRenew, Holder: l.Holder, At: now, Watermark: watermark})
	if err != nil {
		return Lease{}, fmt.Errorf("store: renew lease epoch %d: %w", l.Epoch, err)
	}
	if !ok {
		return Lease{}, fmt.Errorf("store: renew lease epoch %d: %w", l.Epoch, ErrStaleEpoch)
	}
	l.Renewals++
	l.RenewedAt, l.Watermark = now, watermark
	// The slot just claimed is this holder's renewal: nothing else changed
	// the lease in between, or the claim would have failed.
	s.cache.verify(l.Fence(), l.Renewals)
	// Keep the chain short: older slots of this epoch are never read again.
	if old := l.Renewals - 16; old > 0 {
		_, _ = s.lease.DeleteOne(ctx, bson.M{"_id": slotID(l.Epoch, old)})
	}
	return l, nil
}

// ReleaseLease marks l released so that the next holder need not wait for
// it to expire.
func (s *Store) ReleaseLease(ctx context.Context, l Lease, watermark, now time.Time) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if watermark.Before(l.Watermark) {
		watermark = l.Watermark
	}
	ok, err := s.advance(ctx, l, leaseDoc{Kind: slotRelease, Holder: l.Holder, At: now, Watermark: watermark})
	if err != nil {
		return fmt.Errorf("store: release lease epoch %d: %w", l.Epoch, err)
	}
	if !ok {
		return fmt.Errorf("store: release lease epoch %d: %w", l.Epoch, ErrStaleEpoch)
	}
	return nil
}

// BumpTokenGen starts a new token generation, provided the lease is still
// exactly as observed. The watchdog calls it before re-inserting a lost
// token. It claims the epoch's next slot, so it cannot race a holder's
// renewal or a successor's takeover, and ends the epoch: an expired holder
// cannot come back with the generation this replaces.
func (s *Store) BumpTokenGen(ctx context.Context, observed Lease) (Lease, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	ok, err := s.advance(ctx, observed, leaseDoc{Kind: slotReinsert, TokenGen: observed.TokenGen + 1, At: time.Now().UTC(), Watermark: observed.Watermark})
	if err != nil {
		return Lease{}, fmt.Errorf("store: bump token generation %d: %w", observed.TokenGen, err)
	}
	if !ok {
		return Lease{}, fmt.Errorf("store: bump token generation %d: %w", observed.TokenGen, ErrLeaseConflict)
	}
	observed.Renewals++
	observed.Released = true
	return s.issueTokenGen(ctx, observed)
}

func (s *Store) issueTokenGen(ctx context.Context, l Lease) (Lease, error) {
	next := l.TokenGen + 1
	ok, err := s.insertLeaseDoc(ctx, leaseDoc{ID: tokenGenID(next), At: time.Now().UTC()})
	if err == nil && !ok && l.Released {
		// A re-insert announced this generation in its slot; its document
		// may already exist.
		ok = true
	}
	if err != nil {
		return Lease{}, fmt.Errorf("store: issue token generation %d: %w", next, err)
	}
	if !ok {
		return Lease{}, fmt.Errorf("store: issue token generation %d: %w", next, ErrLeaseConflict)
	}
	s.cache.put(0, 0, next)
	s.writeHint(ctx)
	if old := next - 16; old > 0 {
		_, _ = s.lease.DeleteOne(ctx, bson.M{"_id": tokenGenID(old)})
	}
	l.TokenGen = next
	return l, nil
}

// RotateTokenGen starts a new token generation on behalf of the current
// holder, which then publishes the new token and acks the old one.
func (s *Store) RotateTokenGen(ctx context.Context, l Lease) (Lease, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	cur, err := s.readLease(ctx)
	if err != nil {
		return Lease{}, fmt.Errorf("store: rotate token generation: %w", err)
	}
	if cur.Epoch != l.Epoch || cur.Holder != l.Holder || cur.Released {
		return Lease{}, fmt.Errorf("store: rotate token generation under epoch %d (current %d): %w", l.Epoch, cur.Epoch, ErrStaleEpoch)
	}
	// The next generation follows the current one, which a watchdog may
	// have moved since the holder last looked.
	return s.issueTokenGen(ctx, cur)
}

// CheckFence returns ErrStaleEpoch unless f is the current, unreleased lease.
func (s *Store) CheckFence(ctx context.Context, f Fence) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	return s.checkFence(ctx, f)
}

// checkFence reads one document when f was verified before: the slot after
// the verified one. Its absence proves nothing changed since, as firmly as
// reading the whole chain would (both are reads at this moment). Otherwise,
// and when that slot exists, it reads the chain.
func (s *Store) checkFence(ctx context.Context, f Fence) error {
	if k, ok := s.cache.verifiedAt(f); ok {
		next, err := s.getLeaseDoc(ctx, slotID(f.Epoch, k+1))
		if err != nil {
			return fmt.Errorf("store: check fence: %w", err)
		}
		if next == nil {
			return nil
		}
	}
	l, err := s.readLease(ctx)
	if err != nil {
		return fmt.Errorf("store: check fence: %w", err)
	}
	if l.Epoch != f.Epoch || l.Holder != f.Holder || l.Released {
		return fmt.Errorf("store: epoch %d (current %d, released %t): %w", f.Epoch, l.Epoch, l.Released, ErrStaleEpoch)
	}
	s.cache.verify(f, l.Renewals)
	return nil
}
