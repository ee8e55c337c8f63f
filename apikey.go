package kavach

import (
	"context"
	"sync"
	"time"

	"github.com/kavachdev/kavach/storage"
)

// APIKey describes an admin API key; the key itself is shown only when it is created.
type APIKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	CreatedAt time.Time  `json:"createdAt"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// APIKeys manages the credentials of the management API. Keys are "kvk_" + 32 random bytes;
// only their SHA-256 hash and a display prefix are stored.
type APIKeys struct {
	k *Kavach

	mu       sync.Mutex
	verified map[string]time.Time // key hash -> when it was last found valid
}

// A key found valid is trusted for this long without asking the database again, so revoking a
// key takes effect on other nodes within this time (at once on the node that revoked it).
const apiKeyCacheTTL = 5 * time.Second

// Bootstrap creates a first key named "admin" if the database has no keys at all, and returns it.
// It returns "" when keys already exist. Two processes bootstrapping at once create one key.
func (a *APIKeys) Bootstrap(ctx context.Context) (string, error) {
	k := a.k
	now := k.now()
	id, err := k.ids.uuid(now)
	if err != nil {
		return "", err
	}
	key, err := k.ids.secret(apiKeyPrefix)
	if err != nil {
		return "", err
	}
	res, err := k.db.Exec(ctx, storage.Stmt{
		SQL:  "INSERT INTO kavach_api_keys (id, name, key_hash, key_prefix, created_at) SELECT ?, 'admin', ?, ?, ?" + k.dialect.FromDual() + " WHERE NOT EXISTS (SELECT 1 FROM kavach_api_keys)",
		Args: []any{id, hashSecret(key), key[:12], now.Unix()},
	})
	if err != nil {
		// A lost answer: the key is there only if this batch wrote it.
		if _, ok := k.landed(ctx, err, "creating the first admin API key "+id, apiKeyByID(id)); !ok {
			return "", storageError("creating the first admin API key", err)
		}
		return key, nil
	}
	if res[0].RowsAffected == 0 {
		return "", nil
	}
	return key, nil
}

// apiKeyByID finds the key with id, whose presence tells that the write of a new key was applied.
func apiKeyByID(id string) storage.Stmt {
	return storage.Stmt{SQL: "SELECT 1 FROM kavach_api_keys WHERE id = ?", Args: []any{id}}
}

// Create makes a new key and returns it; it is not retrievable later.
func (a *APIKeys) Create(ctx context.Context, name string) (string, *APIKey, error) {
	k := a.k
	if err := checkName("name", name); err != nil {
		return "", nil, err
	}
	now := k.now()
	id, err := k.ids.uuid(now)
	if err != nil {
		return "", nil, err
	}
	key, err := k.ids.secret(apiKeyPrefix)
	if err != nil {
		return "", nil, err
	}
	if _, err := k.db.Exec(ctx, storage.Stmt{
		SQL:  "INSERT INTO kavach_api_keys (id, name, key_hash, key_prefix, created_at) VALUES (?, ?, ?, ?, ?)",
		Args: []any{id, name, hashSecret(key), key[:12], now.Unix()},
	}); err != nil {
		// A lost answer: if the key is there, it was created, and the caller alone can have it.
		if _, ok := k.landed(ctx, err, "creating admin API key "+id, apiKeyByID(id)); !ok {
			return "", nil, storageError("creating an admin API key", err)
		}
	}
	return key, &APIKey{ID: id, Name: name, Prefix: key[:12], CreatedAt: unix(now.Unix())}, nil
}

// List returns every key, revoked ones included, oldest first.
func (a *APIKeys) List(ctx context.Context) ([]APIKey, error) {
	res, err := a.k.db.Exec(ctx, storage.Stmt{SQL: "SELECT id, name, key_prefix, created_at, revoked_at FROM kavach_api_keys ORDER BY id"})
	if err != nil {
		return nil, storageError("listing admin API keys", err)
	}
	out := make([]APIKey, 0, len(res[0].Rows))
	for _, r := range res[0].Rows {
		key := APIKey{ID: asString(r[0]), Name: asString(r[1]), Prefix: asString(r[2]), CreatedAt: unix(asInt(r[3]))}
		if r[4] != nil {
			t := unix(asInt(r[4]))
			key.RevokedAt = &t
		}
		out = append(out, key)
	}
	return out, nil
}

// Revoke revokes the key with id. Revoking twice succeeds.
func (a *APIKeys) Revoke(ctx context.Context, id string) error {
	if err := checkID("id", id); err != nil {
		return errorf(CodeNotFound, "API key %q not found", id)
	}
	res, err := a.k.db.Exec(ctx,
		storage.Stmt{SQL: "UPDATE kavach_api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", Args: []any{a.k.now().Unix(), id}},
		storage.Stmt{SQL: "SELECT key_hash FROM kavach_api_keys WHERE id = ?", Args: []any{id}},
	)
	if err != nil {
		return storageError("revoking an admin API key", err)
	}
	if len(res[1].Rows) == 0 {
		return errorf(CodeNotFound, "API key %q not found", id)
	}
	a.mu.Lock()
	delete(a.verified, asString(res[1].Rows[0][0]))
	a.mu.Unlock()
	return nil
}

// Verify reports whether key is a valid, unrevoked admin key.
func (a *APIKeys) Verify(ctx context.Context, key string) (bool, error) {
	if !IsAPIKey(key) {
		return false, nil
	}
	h := hashSecret(key)
	now := a.k.now()
	a.mu.Lock()
	at, ok := a.verified[h]
	a.mu.Unlock()
	if ok && now.Sub(at) < apiKeyCacheTTL && !now.Before(at) {
		return true, nil
	}
	res, err := a.k.db.Exec(ctx, storage.Stmt{SQL: "SELECT key_hash FROM kavach_api_keys WHERE key_hash = ? AND revoked_at IS NULL", Args: []any{h}})
	if err != nil {
		return false, storageError("verifying an admin API key", err)
	}
	valid := len(res[0].Rows) == 1 && sameHash(asString(res[0].Rows[0][0]), h)
	a.mu.Lock()
	if valid {
		if a.verified == nil || len(a.verified) > 1000 {
			a.verified = map[string]time.Time{}
		}
		a.verified[h] = now
	} else {
		delete(a.verified, h)
	}
	a.mu.Unlock()
	return valid, nil
}
