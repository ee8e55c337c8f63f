package mysql

import (
	"database/sql"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/kavachdev/kavach/storage"
)

// readRows reads every row, normalising values to int64, float64, string, []byte or nil. The
// driver gives integers and doubles as numbers and everything else as bytes; the column's type
// says whether those bytes are text, binary data or a DECIMAL (what SUM returns).
func readRows(rows *sql.Rows, out *storage.Result) error {
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	types, err := rows.ColumnTypes()
	if err != nil {
		return err
	}
	kinds := make([]valueKind, len(types))
	for i, t := range types {
		kinds[i] = kindOfColumn(t.DatabaseTypeName())
	}
	res := [][]any{}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		row := make([]any, len(cols))
		for i, v := range vals {
			if row[i], err = normalizeValue(v, kinds[i]); err != nil {
				return fmt.Errorf("column %s: %w", cols[i], err)
			}
			vals[i] = nil
		}
		res = append(res, row)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	out.Columns, out.Rows = cols, res
	return nil
}

type valueKind int

const (
	valueText valueKind = iota
	valueBinary
	valueDecimal
)

func kindOfColumn(typeName string) valueKind {
	switch {
	case strings.HasSuffix(typeName, "BLOB"), typeName == "BINARY", typeName == "VARBINARY", typeName == "BIT", typeName == "GEOMETRY":
		return valueBinary
	case typeName == "DECIMAL":
		return valueDecimal
	}
	return valueText
}

func normalizeValue(v any, kind valueKind) (any, error) {
	switch x := v.(type) {
	case nil, int64, float64:
		return x, nil
	case float32:
		return float64(x), nil
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), nil
		}
		return float64(x), nil
	case []byte:
		switch kind {
		case valueBinary:
			return append([]byte{}, x...), nil
		case valueDecimal:
			return decimalValue(string(x))
		}
		return string(x), nil
	case string:
		if kind == valueBinary {
			return []byte(x), nil
		}
		return x, nil
	}
	return nil, fmt.Errorf("unexpected value of type %T from the driver", v)
}

// decimalValue turns a DECIMAL into int64 when it is integral and fits (SUM over BIGINT columns
// returns DECIMAL), and into float64 otherwise.
func decimalValue(s string) (any, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	if r, ok := new(big.Rat).SetString(s); ok && r.IsInt() && r.Num().IsInt64() {
		return r.Num().Int64(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("cannot read DECIMAL %q: %w", s, err)
	}
	return f, nil
}
