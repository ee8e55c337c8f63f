package pg

import (
	"fmt"
	"math"
	"math/big"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// readRows drains rows into out, normalising every value to int64, float64, string, []byte or
// nil. Columns is set (possibly with zero rows) whenever the statement returns columns.
func readRows(rows pgx.Rows, out *[][]any, m *pgtype.Map) error {
	fields := rows.FieldDescriptions()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		row := make([]any, len(vals))
		for i, v := range vals {
			if row[i], err = normalizeValue(v, fields[i].DataTypeOID, m); err != nil {
				return fmt.Errorf("column %s: %w", fields[i].Name, err)
			}
		}
		*out = append(*out, row)
	}
	return rows.Err()
}

func normalizeValue(v any, oid uint32, m *pgtype.Map) (any, error) {
	switch x := v.(type) {
	case nil, int64, float64, string:
		return x, nil
	case []byte:
		if x == nil {
			return []byte{}, nil
		}
		return x, nil
	case int32:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case uint32: // oid, xid
		return int64(x), nil
	case float32:
		return float64(x), nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case pgtype.Numeric:
		return numericValue(x)
	}
	// Any other server type (json, uuid, timestamps, inet, …) comes back as its text form, so
	// callers see what the server would print.
	buf, err := m.Encode(oid, pgtype.TextFormatCode, v, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot convert a value of type oid %d (%T) to text: %w", oid, v, err)
	}
	if buf == nil {
		return nil, nil
	}
	return string(buf), nil
}

// numericValue turns a NUMERIC into int64 when it is integral and fits (SUM and COALESCE(SUM)
// over BIGINT columns return NUMERIC in Postgres), and into float64 otherwise.
func numericValue(n pgtype.Numeric) (any, error) {
	if !n.Valid {
		return nil, nil
	}
	if n.NaN || n.InfinityModifier != pgtype.Finite {
		f, err := n.Float64Value()
		return f.Float64, err
	}
	i := n.Int
	if i == nil {
		i = new(big.Int)
	}
	exp := n.Exp
	if exp < 0 {
		// Integral if the trailing -exp decimal digits are zeros.
		q, r := new(big.Int), new(big.Int)
		q.QuoRem(i, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-exp)), nil), r)
		if r.Sign() == 0 {
			i, exp = q, 0
		}
	}
	if exp >= 0 && exp < 19 {
		v := new(big.Int).Mul(i, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil))
		if v.IsInt64() {
			return v.Int64(), nil
		}
	}
	f, err := n.Float64Value()
	if err != nil {
		return nil, err
	}
	if math.IsInf(f.Float64, 0) {
		return nil, fmt.Errorf("numeric value out of the range of float64")
	}
	return f.Float64, nil
}
