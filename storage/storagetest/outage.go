package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kavachdev/kavach/storage"
)

// outageDeadline bounds how long a call may take to fail while the server is away. Clients
// must notice a refused or dropped connection at once, not wait out a long timeout.
const outageDeadline = 5 * time.Second

func testOutage(t *testing.T, b Backend) {
	d := b.New(t)
	if d.Outage == nil {
		t.Fatalf("backend %s is not embedded but its databases offer no Outage", b.Name)
	}
	o := d.Outage(t)
	db := OpenConfig(t, o.Config)
	migrate(t, db)
	exec(t, db, insertUser(userID))
	// Fill the pool with several connections, which the outage will all break.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exec(t, db, stmt("SELECT COUNT(*) FROM kavach_users"), stmt("SELECT 1"+db.Dialect().FromDual()))
		}()
	}
	wg.Wait()

	o.Cut(t)
	for _, s := range [][]storage.Stmt{
		{stmt("SELECT COUNT(*) FROM kavach_users")},
		{insertUser("u-during"), stmt("SELECT COUNT(*) FROM kavach_users")},
	} {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		_, err := db.Exec(c, s...)
		took := time.Since(start)
		cancel()
		if err == nil {
			t.Fatalf("a %d-statement batch succeeded while the server was down", len(s))
		}
		if took > outageDeadline {
			t.Errorf("a batch took %v to fail while the server was down, want under %v: %v", took.Round(time.Millisecond), outageDeadline, err)
		}
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("error during the outage is not storage.ErrUnavailable: %v", err)
		}
		checkOneLine(t, err)
		t.Logf("during the outage (%v): %v", took.Round(time.Millisecond), err)
	}

	o.Restore(t)
	// The first call after the server is back succeeds, and so do concurrent ones.
	res, err := db.Exec(ctx(t), stmt("SELECT COUNT(*) FROM kavach_users WHERE id = ?", userID))
	if err != nil {
		t.Fatalf("first call after the server came back: %v", err)
	}
	if fmt.Sprint(res[0].Rows) != "[[1]]" {
		t.Errorf("data after the outage: %v", res[0].Rows)
	}
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := db.Exec(ctx(t), insertUser(fmt.Sprintf("u-after-%d", i)), stmt("SELECT COUNT(*) FROM kavach_users"))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent call after the outage: %v", err)
		}
	}
	if n := count(t, db, "kavach_users"); n != 17 {
		t.Errorf("%d users after the outage, want 17 (the write during the outage must not have happened)", n)
	}
}
