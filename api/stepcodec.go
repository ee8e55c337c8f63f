package api

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/kavachdev/kavach/internal/jsonw"
)

// The envelope has a fixed shape, so it is read and written by hand here rather than with
// encoding/json. Inside WebAssembly, reflection and the many small allocations of encoding/json
// cost 10 to 30 times what they cost natively (measured in wazero: a generic decode of an
// authorize envelope took 120 us against 12 us natively), while plain loops cost about 3 times:
// the hand-written codec is what keeps a step within a few times the native cost. The free-form
// parts (an operation's input, its result) still use encoding/json.

// decodeEnvelope parses a JSON step envelope. Unknown fields are skipped.
//
// The reader keeps the first error and turns every later call into a no-op, so the parsing code
// reads as straight-line loops without callbacks (closures passed around would each be an
// allocation per element).
//
// Strings without escapes are not copied one by one: the envelope is copied once, and they point
// into that copy, which nothing writes to. An authorize step has some forty strings, and in the
// WebAssembly build every allocation is dear.
func decodeEnvelope(b []byte) (*StepInput, error) {
	r := &jreader{b: bytes.Clone(b)}
	in := &StepInput{}
	for first := true; r.field('{', &first); {
		switch string(r.key()) {
		case "op":
			in.Op = r.str()
		case "input":
			if raw := r.skip(); string(raw) != "null" {
				in.Input = raw
			}
		case "now":
			in.Now = r.int()
		case "seed":
			in.Seed = r.str()
		case "facts":
			for first := true; r.elem(&first); {
				in.Facts = append(in.Facts, r.fact())
			}
		case "config":
			r.config(&in.Config)
		default:
			r.skip()
		}
	}
	if r.err == nil {
		if r.ws(); r.i != len(r.b) {
			r.fail("unexpected data after the envelope")
		}
	}
	return in, r.err
}

// jreader reads JSON from b. After the first error, err is set and every method does nothing.
type jreader struct {
	b     []byte
	i     int
	err   error
	depth int // of the values skip is inside
}

// maxSkipDepth bounds the nesting of values the reader skips or keeps raw (an operation's
// input): deeper input is refused instead of recursing until the stack runs out.
const maxSkipDepth = 256

func (r *jreader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: %s", r.i, fmt.Sprintf(format, args...))
	}
	r.i = len(r.b)
}

func (r *jreader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

func (r *jreader) peek() byte {
	r.ws()
	if r.i < len(r.b) {
		return r.b[r.i]
	}
	return 0
}

func (r *jreader) literal(lit string) bool {
	if r.peek() == lit[0] && len(r.b)-r.i >= len(lit) && string(r.b[r.i:r.i+len(lit)]) == lit {
		r.i += len(lit)
		return true
	}
	return false
}

// next advances over the container's opening (when *first) or a separator, and reports whether
// another member follows. null is an empty container.
func (r *jreader) next(open, close byte, first *bool) bool {
	if r.err != nil {
		return false
	}
	if *first {
		*first = false
		if r.literal("null") {
			return false
		}
		if r.peek() != open {
			r.fail("expected %q", open)
			return false
		}
		r.i++
		if r.peek() == close {
			r.i++
			return false
		}
		return true
	}
	switch r.peek() {
	case ',':
		r.i++
		return true
	case close:
		r.i++
		return false
	}
	r.fail("expected ',' or %q", close)
	return false
}

// field reports whether an object has another member; read it with key then a value.
func (r *jreader) field(open byte, first *bool) bool { return r.next(open, '}', first) }

// elem reports whether an array has another element.
func (r *jreader) elem(first *bool) bool { return r.next('[', ']', first) }

// key reads an object key and its colon. The result aliases the input; compare it, do not keep it.
func (r *jreader) key() []byte {
	if r.peek() != '"' {
		r.fail("expected a key")
		return nil
	}
	start := r.i + 1
	for j := start; j < len(r.b); j++ {
		switch r.b[j] {
		case '\\':
			s := r.str() // a key with escapes: rare, decode properly
			if r.peek() != ':' {
				r.fail("expected ':'")
			}
			r.i++
			return []byte(s)
		case '"':
			r.i = j + 1
			if r.peek() != ':' {
				r.fail("expected ':'")
				return nil
			}
			r.i++
			return r.b[start:j]
		}
	}
	r.fail("unterminated key")
	return nil
}

func (r *jreader) str() string {
	if r.err != nil {
		return ""
	}
	if r.peek() != '"' {
		r.fail("expected a string")
		return ""
	}
	r.i++
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			var s string
			if r.i > start {
				s = unsafe.String(&r.b[start], r.i-start) // see decodeEnvelope
			}
			r.i++
			return s
		case c == '\\':
			return r.escaped(start)
		case c < 0x20:
			r.fail("control character in a string")
			return ""
		}
		r.i++
	}
	r.fail("unterminated string")
	return ""
}

// escaped finishes a string that contains escapes, from its first byte at start.
func (r *jreader) escaped(start int) string {
	out := append([]byte(nil), r.b[start:r.i]...)
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			if !utf8.Valid(out) {
				out = []byte(string([]rune(string(out)))) // invalid bytes become U+FFFD, as encoding/json does
			}
			return string(out)
		case c < 0x20:
			r.fail("control character in a string")
			return ""
		case c != '\\':
			out = append(out, c)
			r.i++
			continue
		}
		if r.i+1 >= len(r.b) {
			break
		}
		e := r.b[r.i+1]
		r.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			cp, ok := r.hex4()
			if !ok {
				r.fail("bad \\u escape")
				return ""
			}
			if utf16.IsSurrogate(cp) {
				if lo, ok := r.lowSurrogate(); ok {
					cp = utf16.DecodeRune(cp, lo)
				} else {
					cp = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, cp)
		default:
			r.fail("bad escape \\%c", e)
			return ""
		}
	}
	r.fail("unterminated string")
	return ""
}

func (r *jreader) hex4() (rune, bool) {
	if r.i+4 > len(r.b) {
		return 0, false
	}
	var n rune
	for _, c := range r.b[r.i : r.i+4] {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	r.i += 4
	return n, true
}

func (r *jreader) lowSurrogate() (rune, bool) {
	if r.i+6 <= len(r.b) && r.b[r.i] == '\\' && r.b[r.i+1] == 'u' {
		save := r.i
		r.i += 2
		if lo, ok := r.hex4(); ok && lo >= 0xdc00 && lo < 0xe000 {
			return lo, true
		}
		r.i = save
	}
	return 0, false
}

// number returns the bytes of a JSON number (aliasing the input).
func (r *jreader) number() []byte {
	if r.err != nil {
		return nil
	}
	r.ws()
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			r.i++
			continue
		}
		break
	}
	if r.i == start {
		r.fail("expected a number")
	}
	return r.b[start:r.i]
}

// parseInt reads a decimal integer without allocating.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > math.MaxInt64 {
		return 0, false
	}
	return int64(n), true
}

func (r *jreader) int() int64 {
	b := r.number()
	n, ok := parseInt(b)
	if !ok && r.err == nil {
		r.fail("%s is not an integer", b)
	}
	return n
}

func (r *jreader) bool() bool {
	switch {
	case r.literal("true"):
		return true
	case r.literal("false"):
		return false
	}
	r.fail("expected true or false")
	return false
}

// skip consumes any value and returns its bytes (aliasing the input).
func (r *jreader) skip() []byte {
	if r.err != nil {
		return nil
	}
	start := r.i
	if r.depth++; r.depth > maxSkipDepth {
		r.fail("values are nested more than %d deep", maxSkipDepth)
		return nil
	}
	defer func() { r.depth-- }()
	switch c := r.peek(); {
	case c == '{':
		for first := true; r.field('{', &first); {
			r.key()
			r.skip()
		}
	case c == '[':
		for first := true; r.elem(&first); {
			r.skip()
		}
	case c == '"':
		r.str()
	case c == 't' || c == 'f':
		r.bool()
	case r.literal("null"):
	default:
		r.number()
	}
	r.ws()
	return r.b[start:r.i]
}

func (r *jreader) strings() []string {
	out := []string{}
	for first := true; r.elem(&first); {
		out = append(out, r.str())
	}
	return out
}

func (r *jreader) fact() Fact {
	var f Fact
	for first := true; r.field('{', &first); {
		switch string(r.key()) {
		case "key":
			f.Key = r.str()
		case "results":
			for first := true; r.elem(&first); {
				f.Results = append(f.Results, r.result())
			}
		case "error":
			if r.literal("null") {
				continue
			}
			f.Error = &FactError{}
			for first := true; r.field('{', &first); {
				switch string(r.key()) {
				case "kind":
					f.Error.Kind = r.str()
				case "message":
					f.Error.Message = r.str()
				case "index":
					f.Error.Index = int(r.int())
				default:
					r.skip()
				}
			}
		default:
			r.skip()
		}
	}
	return f
}

func (r *jreader) result() FactResult {
	var res FactResult
	for first := true; r.field('{', &first); {
		switch string(r.key()) {
		case "columns":
			res.Columns = r.strings()
		case "rows":
			res.Rows = [][]Value{}
			for first := true; r.elem(&first); {
				row := make([]Value, 0, len(res.Columns))
				for first := true; r.elem(&first); {
					row = append(row, r.value())
				}
				res.Rows = append(res.Rows, row)
			}
		case "rowsAffected":
			res.RowsAffected = r.int()
		default:
			r.skip()
		}
	}
	return res
}

// value reads one database value in its wire form (see Value).
func (r *jreader) value() Value {
	switch c := r.peek(); {
	case r.err != nil:
		return Value{}
	case r.literal("null"):
		return Value{}
	case c == '"':
		return Value{r.str()}
	case c == '{':
		var v Value
		seen := false
		for first := true; r.field('{', &first); {
			seen = true
			switch string(r.key()) {
			case "int":
				s := r.str()
				n, ok := parseInt([]byte(s))
				if !ok {
					r.fail("%q is not an int64", s)
				}
				v.V = n
			case "float":
				var s string
				if r.peek() == '"' {
					s = r.str()
				} else {
					s = string(r.number())
				}
				f, err := strconv.ParseFloat(s, 64)
				if err != nil {
					r.fail("%q is not a float", s)
				}
				v.V = f
			case "blob":
				d, err := base64.StdEncoding.DecodeString(r.str())
				if err != nil {
					r.fail("blob: %v", err)
				}
				v.V = d
			default:
				r.fail("unknown value form (int, float or blob)")
			}
		}
		if !seen {
			r.fail("empty value object")
		}
		return v
	default:
		b := r.number()
		if n, ok := parseInt(b); ok {
			return Value{n}
		}
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			r.fail("%s is not a number", b)
		}
		return Value{f}
	}
}

func (r *jreader) config(c *StepConfig) {
	for first := true; r.field('{', &first); {
		switch string(r.key()) {
		case "dialect":
			c.Dialect = r.str()
		case "envelope":
			c.Envelope = r.str()
		case "insecureNoAuth":
			c.InsecureNoAuth = r.bool()
		case "basePath":
			c.BasePath = r.str()
		case "trustedProxies":
			c.TrustedProxies = r.strings()
		case "agents":
			for first := true; r.field('{', &first); {
				switch string(r.key()) {
				case "maxPerUser":
					c.Agents.MaxPerUser = int(r.int())
				case "tokenExpiry":
					c.Agents.TokenExpiry = r.str()
				case "requireExistingOwners":
					c.Agents.RequireExistingOwners = r.bool()
				default:
					r.skip()
				}
			}
		default:
			r.skip()
		}
	}
}

// appendOutput writes a step output envelope.
func appendOutput(b []byte, o *StepOutput) []byte {
	b = append(b, `{"status":`...)
	b = appendString(b, o.Status)
	if o.Key != "" {
		b = append(b, `,"key":`...)
		b = appendString(b, o.Key)
	}
	if len(o.Stmts) > 0 {
		b = append(b, `,"stmts":`...)
		b = appendStmts(b, o.Stmts)
	}
	if o.ReadOnly {
		b = append(b, `,"readOnly":true`...)
	}
	if len(o.Result) > 0 {
		b = append(b, `,"result":`...)
		b = append(b, o.Result...)
	}
	if len(o.Effects) > 0 {
		b = append(b, `,"effects":`...)
		b = appendStmts(b, o.Effects)
	}
	if o.Error != nil {
		b = append(b, `,"error":{"code":`...)
		b = appendString(b, o.Error.Code)
		b = append(b, `,"message":`...)
		b = appendString(b, o.Error.Message)
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendStmts(b []byte, stmts []WireStmt) []byte {
	b = append(b, '[')
	for i, s := range stmts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"sql":`...)
		b = appendString(b, s.SQL)
		b = append(b, `,"args":[`...)
		for j, a := range s.Args {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, a.V)
		}
		b = append(b, "]}"...)
	}
	return append(b, ']')
}

var errValueType = errors.New("step: value cannot be sent")

func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, x)
	case int64:
		if x >= -maxSafeInt && x <= maxSafeInt {
			return strconv.AppendInt(b, x, 10)
		}
		b = append(b, `{"int":"`...)
		b = strconv.AppendInt(b, x, 10)
		return append(b, `"}`...)
	case int:
		return appendValue(b, int64(x))
	case int32:
		return appendValue(b, int64(x))
	case bool:
		if x {
			return append(b, '1')
		}
		return append(b, '0')
	case float64:
		b = append(b, `{"float":`...)
		if math.IsNaN(x) || math.IsInf(x, 0) {
			b = appendString(b, strconv.FormatFloat(x, 'g', -1, 64))
		} else {
			b = strconv.AppendFloat(b, x, 'g', -1, 64)
		}
		return append(b, '}')
	case []byte:
		b = append(b, `{"blob":"`...)
		b = base64.StdEncoding.AppendEncode(b, x)
		return append(b, `"}`...)
	}
	panic(fmt.Errorf("%w: %T", errValueType, v))
}

// appendString writes s as a JSON string exactly as encoding/json does without HTML escaping.
func appendString(b []byte, s string) []byte { return jsonw.AppendString(b, s) }
