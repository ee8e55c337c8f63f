package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/kavachdev/kavach/internal/jsonw"
	"github.com/kavachdev/kavach/storage"
)

// The envelope has a fixed shape, so it is read and written by hand here rather than with
// encoding/json. Inside WebAssembly, reflection and the many small allocations of encoding/json
// cost 10 to 30 times what they cost natively (measured in wazero: a generic decode of an
// authorize envelope took 120 us against 12 us natively); plain Go code costs 5 to 8 times, an
// allocation 10 times or more. The free-form parts (an operation's input, its result) use
// encoding/json, except the input of the authorize operations (decodeAuthorizeInput).

// decodeEnvelope parses a JSON step envelope. Unknown fields are skipped.
//
// The reader keeps the first error and turns every later call into a no-op, so the parsing code
// reads as straight-line loops without callbacks (closures passed around would each be an
// allocation per element).
//
// Inside WebAssembly every allocation is dear (an authorize step has some forty strings and
// thirty database values), so the envelope is decoded with as few allocations as its shape
// allows. b belongs to the decoder (Step passes a copy of its envelope, StepInPlace the envelope
// itself): strings point into it (a string with escapes is unescaped in place, where it was), and
// values, rows, columns and boxed strings and integers are carved from slabs (see
// jreader.boxString) that start in d.
func decodeEnvelope(b []byte, d *decoding) (*StepInput, error) {
	d.r = jreader{b: b, inPlace: true}
	r, in := &d.r, &d.in
	// The slabs start in d; a larger envelope grows them (append).
	r.strs, r.vals, r.rows, r.ints, r.results = d.strs[:0], d.vals[:0], d.rows[:0], d.ints[:0], d.results[:0]
	in.Facts = d.facts[:0]
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

// decodeAuthorizeInput reads the input of the authorize operations exactly as json.Unmarshal
// into an authorizeInput does (which costs some 10 us in WebAssembly, against 1 us for this):
// the usual input, an object of the known string fields and an optional arguments object, is read
// here, and anything else (another field, which encoding/json would match case-insensitively, a
// repeated field, a value of another type, invalid UTF-8, invalid JSON) goes to encoding/json,
// so that the result and every error stay the same.
func decodeAuthorizeInput(raw []byte) (authorizeInput, error) {
	var ai authorizeInput
	if ok := ai.read(raw); ok {
		return ai, nil
	}
	var slow authorizeInput // apart from ai, which then need not be allocated
	err := json.Unmarshal(raw, &slow)
	return slow, err
}

func (ai *authorizeInput) read(raw []byte) bool {
	r := &jreader{b: raw}
	if r.peek() != '{' {
		return false
	}
	var seen uint8
	for first := true; r.field('{', &first); {
		var f *string
		var bit uint8
		switch string(r.key()) {
		case "agentId":
			f, bit = &ai.AgentID, 1
		case "token":
			f, bit = &ai.Token, 2
		case "action":
			f, bit = &ai.Action, 4
		case "resource":
			f, bit = &ai.Resource, 8
		case "ip":
			f, bit = &ai.IP, 16
		case "userAgent":
			f, bit = &ai.UserAgent, 32
		case "arguments":
			bit = 64
		default:
			return false
		}
		if seen&bit != 0 || r.err != nil {
			return false
		}
		seen |= bit
		switch {
		case r.literal("null"):
		case f != nil:
			if r.peek() != '"' {
				return false
			}
			if *f = r.str(); !utf8.ValidString(*f) {
				return false
			}
		default:
			if r.peek() != '{' {
				return false
			}
			var args map[string]any
			if err := json.Unmarshal(r.skip(), &args); err != nil || r.err != nil {
				return false
			}
			ai.Arguments = args
		}
	}
	r.ws()
	return r.err == nil && r.i == len(r.b)
}

// decoding holds what a step needs to decode its envelope and to run, in one allocation sized
// for an authorize step: in the WebAssembly build each allocation costs some 0.2 to 0.5 us.
type decoding struct {
	_       [0]func() // not comparable: no equality code for the arrays below
	step    stepState
	in      StepInput
	r       jreader
	facts   [2]Fact
	results [4]FactResult
	rows    [12][]Value
	vals    [48]Value
	strs    [48]string
	ints    [8]int64
}

// jreader reads JSON from b. After the first error, err is set and every method does nothing.
type jreader struct {
	b     []byte
	i     int
	err   error
	depth int // of the values skip is inside
	// inPlace: b belongs to the reader, so escaped strings are unescaped where they are instead
	// of into new memory. Raw values (skip's result) never contain unescaped strings.
	inPlace bool

	// Append-only slabs that values, rows and columns are carved from. A full slab is replaced
	// by a larger one (append); what was carved from the old one keeps it alive and unchanged.
	strs    []string
	ints    []int64
	vals    []Value
	rows    [][]Value
	results []FactResult
}

// An interface value holding a string or an int64 is a type word and a pointer to a copy of the
// value, and the conversion allocates that copy (except for small integers). The reader boxes
// the values of the facts, some thirty per authorize step, into its slabs instead: the interface
// points at the value in the slab, which never changes once appended. The result is an ordinary
// interface value: type switches, comparisons and the collector see no difference.

// eface is the layout of an interface value without methods (the runtime's eface).
type eface struct {
	typ, data unsafe.Pointer
}

func (r *jreader) boxString(s string) any {
	if s == "" {
		return ""
	}
	r.strs = append(r.strs, s)
	v := any("")
	(*eface)(unsafe.Pointer(&v)).data = unsafe.Pointer(&r.strs[len(r.strs)-1])
	return v
}

func (r *jreader) boxInt(n int64) any {
	if n >= 0 && n < 256 {
		return n // the runtime has these preallocated
	}
	r.ints = append(r.ints, n)
	v := any(int64(0))
	(*eface)(unsafe.Pointer(&v)).data = unsafe.Pointer(&r.ints[len(r.ints)-1])
	return v
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
	if i := r.i; !*first && i < len(r.b) && r.b[i] == ',' { // the usual case (after an error, r.i is past the end)
		r.i = i + 1
		return true
	}
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
	for j := jsonw.StringEnd(r.b, start); j < len(r.b); j = jsonw.StringEnd(r.b, j+1) {
		switch r.b[j] {
		case '\\':
			s := r.str() // a key with escapes: rare, decode properly
			if r.peek() != ':' {
				r.fail("expected ':'")
				return nil
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
	b := r.b
	start := r.i + 1
	if i := jsonw.StringEnd(b, start); i < len(b) {
		r.i = i
		switch b[i] {
		case '"':
			r.i++
			if i == start {
				return ""
			}
			return unsafe.String(&b[start], i-start) // see decodeEnvelope
		case '\\':
			if r.inPlace {
				// Unescaping never lengthens a string: write it over itself.
				return r.escaped(b[start:i])
			}
			return r.escaped(append([]byte(nil), b[start:i]...))
		}
		r.fail("control character in a string")
		return ""
	}
	r.i = len(b)
	r.fail("unterminated string")
	return ""
}

// escaped finishes a string that contains escapes; out holds the bytes before the first escape.
// When out aliases the input (r.inPlace), every byte is written at or before the position it was
// read from, so nothing unread is overwritten.
func (r *jreader) escaped(out []byte) string {
	for r.i < len(r.b) {
		if j := jsonw.StringEnd(r.b, r.i); j > r.i {
			out = append(out, r.b[r.i:j]...) // in place, the regions may overlap: copying handles that
			r.i = j
			continue
		}
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			if !utf8.Valid(out) {
				return string([]rune(string(out))) // invalid bytes become U+FFFD, as encoding/json does
			}
			if r.inPlace {
				return unsafe.String(unsafe.SliceData(out), len(out))
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
	// The bytes of a raw value stay as they came: its strings and keys are not unescaped in place.
	inPlace := r.inPlace
	r.inPlace = false
	defer func() { r.depth--; r.inPlace = inPlace }()
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

// strings reads an array of strings (null reads as empty).
func (r *jreader) strings() []string {
	start := len(r.strs)
	for first := true; r.elem(&first); {
		s := r.str()
		r.strs = append(r.strs, s)
	}
	return r.strs[start:len(r.strs):len(r.strs)]
}

func (r *jreader) fact() Fact {
	var f Fact
	for first := true; r.field('{', &first); {
		switch string(r.key()) {
		case "key":
			f.Key = r.str()
		case "results":
			start := len(r.results)
			for first := true; r.elem(&first); {
				res := r.result()
				r.results = append(r.results, res)
			}
			f.Results = r.results[start:len(r.results):len(r.results)]
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
			rows := len(r.rows)
			for first := true; r.elem(&first); {
				start := len(r.vals)
				r.row()
				r.rows = append(r.rows, r.vals[start:len(r.vals):len(r.vals)])
			}
			res.Rows = r.rows[rows:len(r.rows):len(r.rows)]
		case "rowsAffected":
			res.RowsAffected = r.int()
		default:
			r.skip()
		}
	}
	return res
}

// row appends the values of one row to r.vals. Rows are most of a step's facts, so the usual
// row, as hosts write it (no whitespace; strings without escapes, integers and nulls), is read in
// one loop here; anything else is handed to the general methods where it starts.
func (r *jreader) row() {
	first := true
	if b := r.b; r.err == nil && r.i < len(b) && b[r.i] == '[' {
		first = false
		if r.i++; r.peek() == ']' {
			r.i++
			return
		}
		if r.rowValues() {
			return
		}
	}
	for r.elem(&first) {
		v := r.value()
		r.vals = append(r.vals, v)
	}
}

// rowValues reads the values of a row from the first one. It reports false if it stopped after
// a value without reaching the row's end, which the caller then finds.
func (r *jreader) rowValues() bool {
	b, i := r.b, r.i
	for {
		var v any
		var c byte // 0 at the end of the input, which the general path reports
		if i < len(b) {
			c = b[i]
		}
		switch {
		case c == '"':
			if j := jsonw.StringEnd(b, i+1); j < len(b) && b[j] == '"' {
				if j > i+1 {
					v = r.boxString(unsafe.String(&b[i+1], j-i-1)) // see decodeEnvelope
				} else {
					v = ""
				}
				i = j + 1
				break
			}
			r.i = i
			v = r.boxString(r.str())
			i = r.i
		case c == 'n' && len(b)-i >= 4 && string(b[i:i+4]) == "null":
			i += 4
		default:
			j := i
			if c == '-' {
				j++
			}
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			if j < len(b) && (b[j] == ',' || b[j] == ']') {
				if n, ok := parseInt(b[i:j]); ok {
					v, i = r.boxInt(n), j
					break
				}
			}
			r.i = i
			v = r.value().V
			i = r.i
		}
		r.vals = append(r.vals, Value{v})
		if r.err != nil || i >= len(b) {
			r.i = i
			return false
		}
		switch b[i] {
		case ',':
			if i+1 < len(b) {
				i++
				continue
			}
		case ']':
			r.i = i + 1
			return true
		}
		r.i = i
		return false
	}
}

// value reads one database value in its wire form (see Value).
func (r *jreader) value() Value {
	switch c := r.peek(); {
	case r.err != nil:
		return Value{}
	case r.literal("null"):
		return Value{}
	case c == '"':
		return Value{r.boxString(r.str())}
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
				v.V = r.boxInt(n)
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
			return Value{r.boxInt(n)}
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

// appendOutput writes a step output envelope. The statements of a need and the effects may be
// given as the core made them (stmts, effects) instead of as WireStmts in o.
func appendOutput(b []byte, o *StepOutput, stmts, effects []storage.Stmt) []byte {
	b = append(b, `{"status":`...)
	b = appendString(b, o.Status)
	if o.Key != "" {
		b = append(b, `,"key":`...)
		b = appendString(b, o.Key)
	}
	if len(o.Stmts) > 0 || len(stmts) > 0 {
		b = append(b, `,"stmts":`...)
		b = appendStmts(b, o.Stmts, stmts)
	}
	if o.ReadOnly {
		b = append(b, `,"readOnly":true`...)
	}
	if len(o.Result) > 0 {
		b = append(b, `,"result":`...)
		b = append(b, o.Result...)
	}
	if len(o.Effects) > 0 || len(effects) > 0 {
		b = append(b, `,"effects":`...)
		b = appendStmts(b, o.Effects, effects)
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

// appendStmts writes ws, or stmts when ws is empty, as a JSON array.
func appendStmts(b []byte, ws []WireStmt, stmts []storage.Stmt) []byte {
	b = append(b, '[')
	if len(ws) > 0 {
		for i, s := range ws {
			b = appendStmt(b, i, s.SQL, valuesAsAny(s.Args))
		}
	} else {
		for i, s := range stmts {
			b = appendStmt(b, i, s.SQL, s.Args)
		}
	}
	return append(b, ']')
}

func appendStmt(b []byte, i int, sql string, args []any) []byte {
	if i > 0 {
		b = append(b, ',')
	}
	b = append(b, `{"sql":`...)
	b = appendString(b, sql)
	b = append(b, `,"args":[`...)
	for j, a := range args {
		if j > 0 {
			b = append(b, ',')
		}
		b = appendValue(b, a)
	}
	return append(b, "]}"...)
}

// stmtsSize estimates the bytes appendStmts writes for stmts, to size an output buffer once.
func stmtsSize(stmts []storage.Stmt) int {
	n := 2
	for _, s := range stmts {
		n += len(s.SQL) + 20
		for _, a := range s.Args {
			n += 8
			if x, ok := a.(string); ok {
				n += len(x)
			}
		}
	}
	return n
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
