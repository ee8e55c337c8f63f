package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Errors a backend classifies its failures into, so the core can react without knowing the
// driver. Backends wrap the driver's error: errors.Is(err, storage.ErrUnique) holds and the
// driver's message is kept.
var (
	// ErrUnique: a UNIQUE or PRIMARY KEY constraint rejected a row.
	ErrUnique = errors.New("unique constraint violated")
	// ErrForeignKey: a row references a missing parent, or a parent still has children.
	ErrForeignKey = errors.New("foreign key constraint violated")
	// ErrConstraint: another constraint (NOT NULL, CHECK) rejected a row.
	ErrConstraint = errors.New("constraint violated")
	// ErrUnavailable: the server could not be reached or the connection broke. The batch may or
	// may not have been applied if the failure happened after it was sent.
	ErrUnavailable = errors.New("database unavailable")
	// ErrClosed: Exec was called after Close.
	ErrClosed = errors.New("database closed")
	// ErrDeferred: the batch was not run. The database answers only the batches it was given
	// answers for (the step protocol: the host runs the batch and repeats the operation with its
	// result). It comes classified as ErrUnavailable too, so that fail-closed paths treat it as
	// a failure; asking again before the operation returns cannot succeed.
	ErrDeferred = errors.New("batch deferred to the host")
)

// StmtError reports which statement of a batch failed. The whole batch was rolled back.
type StmtError struct {
	Index int    // position of the failing statement in the batch
	SQL   string // its SQL, for the log; never contains argument values
	Err   error
}

func (e *StmtError) Error() string {
	return fmt.Sprintf("statement %d (%s): %v", e.Index, abbreviate(e.SQL, 80), e.Err)
}

func (e *StmtError) Unwrap() error { return e.Err }

// Classified wraps err so that errors.Is(result, kind) holds while the message stays err's.
func Classified(kind, err error) error {
	if err == nil || kind == nil {
		return err
	}
	return &classified{kind: kind, err: err}
}

type classified struct{ kind, err error }

func (c *classified) Error() string        { return c.err.Error() }
func (c *classified) Unwrap() []error      { return []error{c.kind, c.err} }
func (c *classified) Is(target error) bool { return target == c.kind }

func abbreviate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Sleep waits for d or until ctx ends, whichever is first, and then returns ctx's error, if
// any: for backends' retry loops.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Backoff is the pause before attempt n+1 of a batch that lost a deadlock or a lock race: short,
// growing, jittered so that the contenders do not collide again in step.
func Backoff(attempt int) time.Duration {
	base := time.Duration(1<<attempt) * time.Millisecond
	return base + rand.N(base)
}
