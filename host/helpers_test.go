package host_test

import "github.com/kavachdev/kavach/storage"

func storageStmt(sql string, args ...any) storage.Stmt { return storage.Stmt{SQL: sql, Args: args} }
