package kavach

import (
	"context"
	"errors"
	"time"

	"github.com/kavachdev/kavach/storage"
)

// A write whose answer is lost (storage.ErrUnavailable: the connection failed after the batch
// was sent) may or may not have been applied. Where the write made something only the caller
// can ever have, a new agent's token, a new API key, or recorded an audit row, the core asks the
// database which it was, by looking for a row only that batch could have written, rather than
// report a failure for a write that happened (and lose the secret it stored) or write it again.
// An agent's update or revoke asks instead whether the agent is now as the write makes it: the
// outcome the caller asked for is then in place, whichever write put it there.

// outageWait bounds how long askAfterOutage keeps asking a database that is still unavailable.
const outageWait = 2 * time.Second

// askAfterOutage runs check, which only reads, after a write failed with storage.ErrUnavailable.
// While the database is still unavailable it asks again, for up to outageWait: a server that
// restarts, or a connection cut in the network, is usually back within that time, and the
// caller is waiting for the answer anyway. A deferred batch (storage.ErrDeferred) is not asked
// again: the host answers it before the operation runs again.
func askAfterOutage(ctx context.Context, db storage.DB, check ...storage.Stmt) ([]storage.Result, error) {
	deadline := time.Now().Add(outageWait)
	for attempt := 1; ; attempt++ {
		res, err := db.Exec(ctx, check...)
		if err == nil || !errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrDeferred) || time.Now().After(deadline) {
			return res, err
		}
		if storage.Sleep(ctx, min(storage.Backoff(attempt), time.Until(deadline))) != nil {
			return res, err
		}
	}
}

// landed reports whether a write that failed with err was applied all the same: err is
// storage.ErrUnavailable and check, the first statement asked, finds a row. The other
// statements' results come back with it, for the caller to answer from. what names the write for
// the log, which records each write found applied this way.
func (k *Kavach) landed(ctx context.Context, err error, what string, check ...storage.Stmt) ([]storage.Result, bool) {
	if !errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrDeferred) {
		return nil, false
	}
	res, qerr := askAfterOutage(ctx, k.db, check...)
	if qerr != nil || len(res[0].Rows) == 0 {
		return nil, false
	}
	k.log.Warn("kavach: the answer to "+what+" was lost; the database has it applied", "err", err)
	return res, true
}
