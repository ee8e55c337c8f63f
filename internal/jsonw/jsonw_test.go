package jsonw

import (
	"bytes"
	"encoding/json"
	"testing"
)

func FuzzAppendStringMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", `q"uote\`, "\x00\x1f\n\t\r\b\f", "\u2028\u2029", "ünï", "\xff\xfebad", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		if got := AppendString(nil, s); !bytes.Equal(got, bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
			t.Fatalf("%q: got %s want %s", s, got, want.Bytes())
		}
	})
}

// FuzzScanners checks the word-at-a-time scanners against byte loops.
func FuzzScanners(f *testing.F) {
	for _, s := range []string{"", "plain text, longer than eight", `q"uote\`, "abcdefgh\x00", "ünïcodé and more", "\xff\xfebad", "12345678\"", "1234567\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		plain := 0
		for plain < len(s) && s[plain] >= 0x20 && s[plain] != '"' && s[plain] != '\\' && s[plain] < 0x80 {
			plain++
		}
		if got := PlainLen(s); got != plain {
			t.Errorf("PlainLen(%q) = %d, want %d", s, got, plain)
		}
		for i := 0; i <= len(s); i++ {
			want := i
			for want < len(s) && s[want] >= 0x20 && s[want] != '"' && s[want] != '\\' {
				want++
			}
			if got := StringEnd([]byte(s), i); got != want {
				t.Errorf("StringEnd(%q, %d) = %d, want %d", s, i, got, want)
			}
		}
	})
}
