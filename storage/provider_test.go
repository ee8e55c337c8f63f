package storage_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kavachdev/kavach/storage"
)

func TestRedactURLHidesEverySecret(t *testing.T) {
	for _, u := range []string{
		"postgres://u:s3cret@h/db", "libsql://db.turso.io?authToken=s3cret", "http://h:8080/?jwt=s3cret&x=1",
		"http://[::1:8080?authToken=s3cret", "mysql://u:s3cret@tcp(h:3306)/db", "s3cret@host", "weird?token=s3cret",
	} {
		if got := storage.RedactURL(u); strings.Contains(got, "s3cret") {
			t.Errorf("RedactURL(%q) = %q", u, got)
		}
	}
	if got := storage.RedactURL("./data/kavach.db"); got != "./data/kavach.db" {
		t.Errorf("a file path was changed: %q", got)
	}
}

func TestOpenNamesTheMissingPackageOrTheValidProviders(t *testing.T) {
	_, err := storage.Open(context.Background(), storage.Config{Provider: "mysql", URL: "mysql://u:s3cret@h/db"})
	if err == nil || !strings.Contains(err.Error(), `import _ "github.com/kavachdev/kavach/storage/mysql"`) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("unlinked: %v", err)
	}
	_, err = storage.Open(context.Background(), storage.Config{Provider: "db2", URL: "x"})
	if err == nil || !strings.Contains(err.Error(), "libsql, mysql, postgres, sqlite") {
		t.Errorf("unknown: %v", err)
	}
}
