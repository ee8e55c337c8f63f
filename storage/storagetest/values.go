package storagetest

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

const valuesTable = `CREATE TABLE IF NOT EXISTS st_values (
  id INTEGER NOT NULL PRIMARY KEY,
  t TEXT,
  i INTEGER,
  r REAL,
  b BLOB
);`

// largeText is a few MB of text mixing one-, two-, three- and four-byte UTF-8 characters.
func largeText(n int) string {
	parts := []string{"kavach ", "ünï ", "日本語 ", "🔐 ", "'quote' ", "\"dq\" ", "back\\slash ", "?; ", "\t\n"}
	var b strings.Builder
	r := rand.New(rand.NewPCG(1, 2))
	for b.Len() < n {
		b.WriteString(parts[r.IntN(len(parts))])
	}
	return b.String()
}

func largeBlob(n int) []byte {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, n)
	for i := range b {
		if i%7 == 0 {
			continue // plenty of zero bytes
		}
		b[i] = byte(r.UintN(256))
	}
	return b
}

func testValuesRoundTrip(t *testing.T, b Backend) {
	db := b.Open(t)
	createTables(t, db, valuesTable)

	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	type row struct {
		name       string
		t          any // what is bound
		i, r, blob any
		want       [4]any // what must come back for t, i, r, b
	}
	rows := []row{
		{name: "nulls", want: [4]any{nil, nil, nil, nil}},
		{name: "empty", t: "", blob: []byte{}, want: [4]any{"", nil, nil, []byte{}}},
		{name: "unicode", t: "ünïcödé ☃ 日本語 🔐 \u200d", want: [4]any{"ünïcödé ☃ 日本語 🔐 \u200d", nil, nil, nil}},
		{name: "sql-looking text", t: `it's "quoted" \ back\slash ? ; -- not a comment /* nor this */ $1 $$x$$`,
			want: [4]any{`it's "quoted" \ back\slash ? ; -- not a comment /* nor this */ $1 $$x$$`, nil, nil, nil}},
		{name: "control characters", t: "tab\tnewline\ncr\rbell\a", want: [4]any{"tab\tnewline\ncr\rbell\a", nil, nil, nil}},
		{name: "int64 max", i: int64(math.MaxInt64), want: [4]any{nil, int64(math.MaxInt64), nil, nil}},
		{name: "int64 min", i: int64(math.MinInt64), want: [4]any{nil, int64(math.MinInt64), nil, nil}},
		{name: "zero and minus one", i: int64(0), r: float64(-1), want: [4]any{nil, int64(0), float64(-1), nil}},
		{name: "2^53+1", i: int64(1<<53 + 1), want: [4]any{nil, int64(1<<53 + 1), nil, nil}},
		{name: "int and bool arguments", i: 42, r: 0.5, t: "x", blob: []byte{1}, want: [4]any{"x", int64(42), 0.5, []byte{1}}},
		{name: "bool true", i: true, want: [4]any{nil, int64(1), nil, nil}},
		{name: "bool false", i: false, want: [4]any{nil, int64(0), nil, nil}},
		{name: "float one third", r: 1.0 / 3, want: [4]any{nil, nil, 1.0 / 3, nil}},
		{name: "float tenth", r: 0.1, want: [4]any{nil, nil, 0.1, nil}},
		{name: "float pi", r: math.Pi, want: [4]any{nil, nil, math.Pi, nil}},
		{name: "float huge", r: 1e300, want: [4]any{nil, nil, 1e300, nil}},
		{name: "float tiny", r: -2.5e-300, want: [4]any{nil, nil, -2.5e-300, nil}},
		{name: "float max", r: math.MaxFloat64, want: [4]any{nil, nil, math.MaxFloat64, nil}},
		{name: "float integral", r: 12345.0, want: [4]any{nil, nil, 12345.0, nil}},
		{name: "zero byte", blob: []byte{0}, want: [4]any{nil, nil, nil, []byte{0}}},
		{name: "every byte value", blob: allBytes, want: [4]any{nil, nil, nil, allBytes}},
		{name: "invalid utf-8 as blob", blob: []byte{0xff, 0xfe, 0x00, 0xc3}, want: [4]any{nil, nil, nil, []byte{0xff, 0xfe, 0x00, 0xc3}}},
		{name: "nil byte slice is NULL", blob: []byte(nil), want: [4]any{nil, nil, nil, nil}},
	}
	// Separate rows: sqld refuses a row over about 5 MB (SQLITE_TOOBIG).
	big := largeText(3 << 20)
	bigBlob := largeBlob(3 << 20)
	rows = append(rows,
		row{name: "3 MB text", t: big, want: [4]any{big, nil, nil, nil}},
		row{name: "3 MB blob", blob: bigBlob, want: [4]any{nil, nil, nil, bigBlob}})

	for i, r := range rows {
		exec(t, db, stmt("INSERT INTO st_values (id, t, i, r, b) VALUES (?, ?, ?, ?, ?)", int64(i), r.t, r.i, r.r, r.blob))
	}
	// Read back one by one, and all at once (a large result).
	all := exec(t, db, stmt("SELECT id, t, i, r, b FROM st_values ORDER BY id"))[0]
	if want := []string{"id", "t", "i", "r", "b"}; fmt.Sprint(all.Columns) != fmt.Sprint(want) {
		t.Errorf("columns %v, want %v", all.Columns, want)
	}
	if len(all.Rows) != len(rows) {
		t.Fatalf("read %d rows, want %d", len(all.Rows), len(rows))
	}
	for i, r := range rows {
		got := exec(t, db, stmt("SELECT t, i, r, b FROM st_values WHERE id = ?", int64(i)))[0]
		if len(got.Rows) != 1 {
			t.Errorf("%s: %d rows", r.name, len(got.Rows))
			continue
		}
		for j, col := range []string{"t", "i", "r", "b"} {
			checkValue(t, r.name+"."+col, got.Rows[0][j], r.want[j])
			checkValue(t, r.name+"."+col+" (in a large result)", all.Rows[i][j+1], r.want[j])
		}
	}
	// Values bound as arguments compare equal to what is stored.
	if n := one(t, db, "SELECT COUNT(*) FROM st_values WHERE t = ? OR b = ?", big, bigBlob); n != int64(2) {
		t.Errorf("looking the 3 MB values up by themselves found %v rows, want 2", n)
	}
}

// checkValue compares a returned value with the expected one, type included.
func checkValue(t *testing.T, what string, got, want any) {
	t.Helper()
	switch w := want.(type) {
	case nil:
		if got != nil {
			t.Errorf("%s: got %T %v, want nil", what, got, abbrev(got))
		}
	case []byte:
		g, ok := got.([]byte)
		if !ok || !bytes.Equal(g, w) {
			t.Errorf("%s: got %T %v, want []byte %v", what, got, abbrev(got), abbrev(w))
		}
	case float64:
		g, ok := got.(float64)
		if !ok || math.Float64bits(g) != math.Float64bits(w) {
			t.Errorf("%s: got %T %v, want float64 %v", what, got, got, w)
		}
	default:
		if got != want {
			t.Errorf("%s: got %T %v, want %T %v", what, got, abbrev(got), want, abbrev(want))
		}
	}
}

func abbrev(v any) string {
	s := fmt.Sprintf("%q", v)
	if b, ok := v.([]byte); ok {
		s = fmt.Sprintf("% x", b)
	}
	if len(s) > 60 {
		for i := 60; i > 0; i-- {
			if utf8.RuneStart(s[i]) {
				return s[:i] + fmt.Sprintf("…(%d bytes)", len(s))
			}
		}
	}
	return s
}

func testResultTypes(t *testing.T, b Backend) {
	db := b.Open(t)
	createTables(t, db, valuesTable)
	exec(t, db,
		stmt("INSERT INTO st_values (id, t, i, r, b) VALUES (?, ?, ?, ?, ?)", int64(1), "a", int64(5), 1.5, []byte("x")),
		stmt("INSERT INTO st_values (id, t, i, r, b) VALUES (?, ?, ?, ?, ?)", int64(2), "b", int64(7), 2.5, nil),
	)
	res := exec(t, db,
		// COUNT, SUM and COALESCE(SUM) over integers are int64 everywhere, although Postgres
		// computes SUM(bigint) as NUMERIC and MySQL as DECIMAL.
		stmt("SELECT COUNT(*), SUM(i), COALESCE(SUM(i), 0), MAX(i), MIN(t), SUM(r), COUNT(DISTINCT t) FROM st_values"),
		stmt("SELECT COUNT(*), SUM(i), COALESCE(SUM(i), 0), MAX(t) FROM st_values WHERE id < 0"),
		stmt("SELECT COALESCE(SUM(CASE WHEN t = 'a' THEN 1 ELSE 0 END), 0), 1, 'text', 2.5 FROM st_values"),
		stmt("SELECT id, t, i, r, b FROM st_values WHERE 1 = 0"),
	)
	want := [][]any{
		{int64(2), int64(12), int64(12), int64(7), "a", 4.0, int64(2)},
		{int64(0), nil, int64(0), nil},
		{int64(1), int64(1), "text", 2.5},
	}
	for i, w := range want {
		if len(res[i].Rows) != 1 {
			t.Fatalf("statement %d: %d rows", i, len(res[i].Rows))
		}
		for j, v := range w {
			checkValue(t, fmt.Sprintf("statement %d column %d (%s)", i, j, res[i].Columns[j]), res[i].Rows[0][j], v)
		}
	}
	empty := res[3]
	if fmt.Sprint(empty.Columns) != "[id t i r b]" {
		t.Errorf("SELECT … WHERE 1 = 0: columns %v, want [id t i r b]", empty.Columns)
	}
	if empty.Rows == nil || len(empty.Rows) != 0 {
		t.Errorf("SELECT … WHERE 1 = 0: rows %#v, want an empty, non-nil slice", empty.Rows)
	}
	// Writes report no columns; reads report no RowsAffected.
	w := exec(t, db, stmt("UPDATE st_values SET i = i + 1 WHERE id = ?", int64(1)), stmt("SELECT i FROM st_values WHERE id = ?", int64(1)))
	if w[0].Columns != nil || w[0].RowsAffected != 1 {
		t.Errorf("UPDATE: columns %v, rows affected %d; want nil, 1", w[0].Columns, w[0].RowsAffected)
	}
	if w[1].RowsAffected != 0 || fmt.Sprint(w[1].Rows) != "[[6]]" {
		t.Errorf("SELECT after UPDATE: rows %v, rows affected %d; want [[6]], 0", w[1].Rows, w[1].RowsAffected)
	}
}
