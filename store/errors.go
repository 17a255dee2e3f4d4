package store

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// Sentinel errors that callers branch on.
var (
	ErrNotFound       = errors.New("not found")
	ErrExists         = errors.New("already exists")
	ErrStaleEpoch     = errors.New("stale executor epoch: the lease has moved to a newer executor")
	ErrLeaseConflict  = errors.New("lease changed concurrently")
	ErrInstanceIDUsed = errors.New("instance id is in use by another live instance")
)

// IsUnavailable reports whether err means the store could not be reached or
// did not answer in time, as opposed to a logical error.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || mongo.IsNetworkError(err) || mongo.IsTimeout(err) {
		return true
	}
	var sse topology.ServerSelectionError
	return errors.As(err, &sse)
}

func isDuplicateKey(err error) bool { return mongo.IsDuplicateKeyError(err) }
