package kavach

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"time"
)

// idGen makes ids and secrets from the entropy source the core was given. Ids are UUIDv7
// (RFC 9562): a millisecond timestamp, then a 12-bit counter that keeps ids made in the same
// millisecond in order, then random bits. Rows therefore sort by id in creation order, which is
// how audit entries within one second keep a stable order.
type idGen struct {
	mu     sync.Mutex
	r      io.Reader
	lastMs int64
	seq    uint16 // 12 bits used
	buf    [512]byte
	n      int // unread bytes at the end of buf
	next   int // how many bytes the next read from r asks for
}

func newIDGen(r io.Reader) *idGen { return &idGen{r: r} }

// fill reads random bytes, buffering small reads. Caller holds mu.
//
// Reads from r start at 64 bytes and double up to the whole buffer: a core built for one step
// of the WebAssembly module makes one or two ids, and generating 512 bytes of ChaCha8 there cost
// 1.5 µs, a twentieth of the step; a long-lived core soon reads 512 bytes at a time.
func (g *idGen) fill(p []byte) error {
	for len(p) > 0 {
		if g.n == 0 {
			size := max(g.next, 64)
			if _, err := io.ReadFull(g.r, g.buf[len(g.buf)-size:]); err != nil {
				return fmt.Errorf("kavach: entropy source failed: %w", err)
			}
			g.n, g.next = size, min(2*size, len(g.buf))
		}
		k := copy(p, g.buf[len(g.buf)-g.n:])
		clear(g.buf[len(g.buf)-g.n : len(g.buf)-g.n+k]) // do not keep handed-out randomness
		g.n -= k
		p = p[k:]
	}
	return nil
}

// uuid returns a new UUIDv7 for a row created at now.
func (g *idGen) uuid(now time.Time) (string, error) {
	var b [16]byte
	g.mu.Lock()
	ms := now.UnixMilli()
	if ms <= g.lastMs {
		// Same millisecond, or the clock stepped back: keep ids increasing.
		ms = g.lastMs
		g.seq++
		if g.seq >= 1<<12 {
			ms++
			g.seq = 0
		}
	} else {
		if err := g.fill(b[6:8]); err != nil {
			g.mu.Unlock()
			return "", err
		}
		g.seq = uint16(b[6])<<3 | uint16(b[7]>>5) // random start in the lower half leaves room to count
	}
	g.lastMs = ms
	err := g.fill(b[8:16])
	seq := g.seq
	g.mu.Unlock()
	if err != nil {
		return "", err
	}
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = 0x70 | byte(seq>>8)&0x0f
	b[7] = byte(seq)
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:]), nil
}

// secret returns prefix followed by 32 random bytes in unpadded base64url.
func (g *idGen) secret(prefix string) (string, error) {
	var b [32]byte
	g.mu.Lock()
	err := g.fill(b[:])
	g.mu.Unlock()
	if err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Agent tokens are "kv_" + 43 base64url characters, as in KavachOS, so tokens minted by either
// implementation validate in the other. Admin API keys use "kvk_".
const (
	agentTokenPrefix = "kv_"
	apiKeyPrefix     = "kvk_"
	tokenPrefixLen   = 11 // "kv_" + 8: the display prefix stored beside the hash
)

// IsAgentToken reports whether s has the form of an agent token.
func IsAgentToken(s string) bool { return len(s) == 46 && s[:3] == agentTokenPrefix }

// IsAPIKey reports whether s has the form of an admin API key.
func IsAPIKey(s string) bool { return len(s) == 47 && s[:4] == apiKeyPrefix }

// hashSecret is the lowercase hex SHA-256 of a token or key: what the database stores.
func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// sameHash compares two stored hashes in constant time.
func sameHash(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
