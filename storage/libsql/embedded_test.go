package libsql_test

import (
	"testing"

	"github.com/kavachdev/kavach/storage/storagetest"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
)

func TestEmbeddedConformanceFile(t *testing.T) { storagetest.Run(t, testdb.SQLiteFile()) }

func TestEmbeddedConformanceMemory(t *testing.T) { storagetest.Run(t, testdb.SQLiteMemory()) }
