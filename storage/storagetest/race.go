package storagetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kavachdev/kavach/storage"
)

const racers = 32

// race runs fn in racers goroutines released at the same moment, each with its own handle when
// the backend allows (as separate Kavach nodes would have), and returns the errors.
func race(t *testing.T, handles []storage.DB, fn func(g int, db storage.DB) error) []error {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, racers)
	for g := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[g] = fn(g, handles[g%len(handles)])
		}()
	}
	close(start)
	wg.Wait()
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// nodes returns a fresh migrated database and several handles on it (one if it is isolated).
func nodes(t *testing.T, b Backend, n int) []storage.DB {
	d := b.New(t)
	first := d.Open(t)
	migrate(t, first)
	handles := []storage.DB{first}
	for len(handles) < n && !d.Isolated {
		handles = append(handles, d.Open(t))
	}
	return handles
}

func testSingleUseRace(t *testing.T, b Backend) {
	handles := nodes(t, b, 4)
	db := handles[0]
	const rounds = 5
	for r := range rounds {
		id := fmt.Sprintf("k-%d", r)
		exec(t, db, stmt("INSERT INTO kavach_api_keys (id, name, key_hash, key_prefix, created_at) VALUES (?, ?, ?, ?, ?)",
			id, "key", "hash-"+id, "kv_", int64(1)))
		var winners atomic.Int32
		errs := race(t, handles, func(g int, db storage.DB) error {
			// The core's single-use pattern: a conditional UPDATE whose RowsAffected decides,
			// followed by a read in the same batch.
			res, err := db.Exec(ctx(t),
				stmt("UPDATE kavach_api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", int64(g+100), id),
				stmt("SELECT revoked_at FROM kavach_api_keys WHERE id = ?", id),
			)
			if err != nil {
				return err
			}
			if res[0].RowsAffected == 1 {
				winners.Add(1)
				if res[1].Rows[0][0] != int64(g+100) {
					return fmt.Errorf("winner %d reads revoked_at %v in its own batch", g, res[1].Rows[0][0])
				}
			} else if res[0].RowsAffected != 0 {
				return fmt.Errorf("RowsAffected %d", res[0].RowsAffected)
			}
			return nil
		})
		for _, err := range errs {
			t.Errorf("round %d: %v", r, err)
		}
		if w := winners.Load(); w != 1 {
			t.Errorf("round %d: %d goroutines consumed the single-use row, want exactly 1", r, w)
		}
	}
}

func testCounterRace(t *testing.T, b Backend) {
	handles := nodes(t, b, 4)
	db := handles[0]
	const perGoroutine = 10
	exec(t, db, insertUser(userID), insertAgent(agentID, userID),
		stmt("INSERT INTO kavach_rate_limits (id, agent_id, resource, window_start, count) VALUES (?, ?, ?, ?, ?)", "rl-1", agentID, "plain", int64(0), int64(0)))
	d := db.Dialect()
	upsert := "INSERT INTO kavach_rate_limits (id, agent_id, resource, window_start, count) VALUES (?, ?, ?, ?, 1)" +
		d.OnConflictUpdate([]string{"agent_id", "resource", "window_start"}, "count = "+d.Current("kavach_rate_limits", "count")+" + 1")
	errs := race(t, handles, func(g int, db storage.DB) error {
		for i := range perGoroutine {
			res, err := db.Exec(ctx(t),
				stmt("UPDATE kavach_rate_limits SET count = count + 1 WHERE id = ?", "rl-1"),
				// The upsert's first execution inserts the row; the others race to update it.
				stmt(upsert, fmt.Sprintf("rl-up-%d-%d", g, i), agentID, "upsert", int64(0)),
			)
			if err != nil {
				return err
			}
			if res[0].RowsAffected != 1 || res[1].RowsAffected < 1 {
				return fmt.Errorf("rows affected %d and %d, want 1 and at least 1", res[0].RowsAffected, res[1].RowsAffected)
			}
		}
		return nil
	})
	for _, err := range errs {
		t.Error(err)
	}
	res := exec(t, db, stmt("SELECT resource, count FROM kavach_rate_limits ORDER BY resource"))[0]
	want := fmt.Sprintf("[[plain %d] [upsert %d]]", racers*perGoroutine, racers*perGoroutine)
	if got := fmt.Sprint(res.Rows); got != want {
		t.Errorf("counters after %d×%d concurrent increments: %s, want %s", racers, perGoroutine, got, want)
	}
}

// testRateLimitRace runs the core's rate-limit batch (authorize.go consumeRate) from 32
// goroutines: the cap holds exactly, however the calls interleave.
func testRateLimitRace(t *testing.T, b Backend) {
	handles := nodes(t, b, 4)
	db := handles[0]
	exec(t, db, insertUser(userID), insertAgent(agentID, userID))
	const limit, attempts = 40, 3
	const now = int64(1_800_000_000)
	var allowed atomic.Int32
	errs := race(t, handles, func(g int, db storage.DB) error {
		for i := range attempts {
			ok, err := consumeRate(t, db, fmt.Sprintf("rl-%d-%d", g, i), agentID, "tool:search", limit, now+int64(i))
			if err != nil {
				return err
			}
			if ok {
				allowed.Add(1)
			}
		}
		return nil
	})
	for _, err := range errs {
		t.Error(err)
	}
	if a := allowed.Load(); a != limit {
		t.Errorf("%d of %d concurrent calls were allowed under a cap of %d", a, racers*attempts, limit)
	}
	if sum := one(t, db, "SELECT COALESCE(SUM(count), 0) FROM kavach_rate_limits WHERE agent_id = ?", agentID); sum != int64(limit) {
		t.Errorf("stored count %v (%T), want int64 %d", sum, sum, limit)
	}
}

// consumeRate is the batch of authorize.go's consumeRate.
func consumeRate(t testing.TB, db storage.DB, id, agentID, key string, perHour int64, ts int64) (bool, error) {
	window := ts - ts%300
	since := ts - 3600
	d := db.Dialect()
	res, err := db.Exec(ctx(t),
		stmt("UPDATE kavach_agents SET last_active_at = ? WHERE id = ?", ts, agentID),
		stmt("DELETE FROM kavach_rate_limits WHERE agent_id = ? AND resource = ? AND window_start < ?", agentID, key, since),
		stmt("INSERT INTO kavach_rate_limits (id, agent_id, resource, window_start, count) SELECT ?, ?, ?, ?, 1 FROM kavach_agents WHERE id = ? AND "+
			"(SELECT COALESCE(SUM(count), 0) FROM kavach_rate_limits WHERE agent_id = ? AND resource = ? AND window_start >= ?) < ?"+
			d.OnConflictUpdate([]string{"agent_id", "resource", "window_start"}, "count = "+d.Current("kavach_rate_limits", "count")+" + 1"),
			id, agentID, key, window, agentID, agentID, key, since, perHour),
	)
	if err != nil {
		return false, err
	}
	return res[2].RowsAffected > 0, nil
}

// testLongWriteBatches runs long write batches (30 statements, as agent creation and group
// commits make) from many goroutines on several handles: each must wait for the write lock, not
// fail because another holds it (sqld answered BEGIN IMMEDIATE with "database is locked").
func testLongWriteBatches(t *testing.T, b Backend) {
	handles := nodes(t, b, 4)
	const batches, size = 4, 30
	errs := race(t, handles, func(g int, db storage.DB) error {
		if g >= 16 {
			return nil
		}
		for i := range batches {
			stmts := make([]storage.Stmt, size)
			for j := range stmts {
				id := fmt.Sprintf("long-%d-%d-%d", g, i, j)
				stmts[j] = stmt("INSERT INTO kavach_api_keys (id, name, key_hash, key_prefix, created_at) VALUES (?, ?, ?, ?, ?)", id, "k", "h-"+id, "kvk_", int64(1))
			}
			if _, err := db.Exec(ctx(t), stmts...); err != nil {
				return err
			}
		}
		return nil
	})
	for _, err := range errs {
		t.Error(err)
	}
	res := exec(t, handles[0], stmt("SELECT COUNT(*) FROM kavach_api_keys"))[0]
	if got := res.Rows[0][0]; got != int64(16*batches*size) {
		t.Errorf("%v rows after %d concurrent batches of %d, want %d", got, 16*batches, size, 16*batches*size)
	}
}
