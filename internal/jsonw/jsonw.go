// Package jsonw appends JSON without reflection, for the encoders on hot paths (the step
// protocol's envelopes, Hrana requests). It writes what encoding/json writes with HTML escaping
// off, so outputs can be compared byte for byte.
package jsonw

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
	"unsafe"
)

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string: quotes, backslashes and control characters escaped,
// invalid UTF-8 replaced by U+FFFD, and U+2028 and U+2029 escaped, as encoding/json does.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i += PlainLen(s[i:]); i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&15])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Word-at-a-time tests on eight bytes x (SWAR), little-endian: each marks the high bit of the
// bytes of the kind. Borrows can only falsely mark bytes above one that truly has the kind, so
// a result is zero exactly when no byte has it, and its lowest mark is the first such byte.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

func hasLess(x uint64, n byte) uint64 { return (x - uint64(n)*ones) &^ x & highs }
func hasByte(x uint64, c byte) uint64 { return hasLess(x^(uint64(c)*ones), 1) }
func hasQuoteEtc(x uint64) uint64     { return hasLess(x, 0x20) | hasByte(x, '"') | hasByte(x, '\\') }
func hasSpecialASCII(x uint64) uint64 { return hasQuoteEtc(x) | x&highs }

// PlainLen returns how many leading bytes of s a JSON string holds as they are: ASCII other than
// control characters, '"' and '\\'. It tests eight bytes at a time, which matters most in
// WebAssembly, where every branch of a byte loop is dear.
func PlainLen(s string) int {
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if m := hasSpecialASCII(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3 // the lowest marked byte is the first special one
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			break
		}
	}
	return i
}

// StringEnd returns the index in b, from i, of the first '"', '\\' or control character: where
// a JSON string's plain run of bytes (which may include UTF-8) ends. It is len(b) if there is none.
func StringEnd(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if m := hasQuoteEtc(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c == '"' || c == '\\' {
			break
		}
	}
	return i
}
