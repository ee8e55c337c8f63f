package api

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeEnvelopeMatchesEncodingJSON: an envelope as hosts write it (encoding/json,
// JSON.stringify) decodes to what encoding/json decodes, whatever its strings hold: the hand-written
// reader unescapes in place and boxes values into slabs, and must not let that show.
func FuzzDecodeEnvelopeMatchesEncodingJSON(f *testing.F) {
	f.Add("authorize", `{"agentId":"a\"b","action":"read"}`, "plain", "with \"escapes\" \\ and \u00e9\u2028 \U0001F600", int64(1764068400), int64(-7))
	f.Add("handle", `null`, "", "\x00\x1f", int64(255), int64(256))
	f.Add("x", `[1,{"a":[]}]`, `["read","write"]`, "\xff invalid", int64(1<<53), int64(-1<<63))
	f.Fuzz(func(t *testing.T, op, input, s1, s2 string, n1, n2 int64) {
		if !json.Valid([]byte(input)) {
			input = "null"
		}
		in := StepInput{Op: op, Input: json.RawMessage(input), Now: n1, Seed: s1, Config: StepConfig{Dialect: s2, TrustedProxies: []string{s1, s2}},
			Facts: []Fact{
				{Key: s1, Results: []FactResult{
					{Columns: []string{s1, s2, "c"}, Rows: [][]Value{{{s1}, {n1}, {nil}}, {{s2}, {n2}, {[]byte(s2)}}, {}}},
					{RowsAffected: n2},
				}},
				{Key: s2, Error: &FactError{Kind: s1, Message: s2, Index: 3}},
			}}
		env, err := json.Marshal(&in)
		if err != nil {
			t.Skip()
		}
		want := &StepInput{}
		if err := json.Unmarshal(env, want); err != nil {
			t.Fatal(err)
		}
		got, err := decodeEnvelope(append([]byte(nil), env...), &decoding{})
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		if string(got.Input) != strings.TrimSpace(string(want.Input)) && !(input == "null" && got.Input == nil) {
			t.Errorf("input %s, want %s", got.Input, want.Input)
		}
		got.Input, want.Input = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %#v\nwant %#v", env, got, want)
		}
	})
}

// FuzzAuthorizeInputMatchesEncodingJSON: the authorize operations read their input exactly as
// json.Unmarshal does, result and error alike.
func FuzzAuthorizeInputMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"agentId":"019abaab-9b80","action":"read","resource":"mcp:github:repos"}`,
		`{"token":"kv_x","action":"read","resource":"r","arguments":{"q":"x","n":[1,2]},"ip":"10.0.0.1","userAgent":"ua"}`,
		`{"AgentID":"a"}`, `{"agentId":"a","agentId":"b"}`, `{"arguments":{"a":1},"arguments":{"b":2}}`,
		`{"action":5}`, `{"action":null,"arguments":null}`, `{"arguments":[]}`, `{"action":"\u00e9\ud800"}`,
		"{\"action\":\"\xff\"}", `{"action":"a"} x`, `[]`, ``, `{"a":1.2.3}`, ` { "action" : "a" } `,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var want authorizeInput
		werr := json.Unmarshal([]byte(raw), &want)
		got, gerr := decodeAuthorizeInput([]byte(raw))
		if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
			t.Fatalf("%q: error %v, want %v", raw, gerr, werr)
		}
		if werr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %#v\nwant %#v", raw, got, want)
		}
	})
}

// TestTruncatedEnvelopesAreBadEnvelopes: every prefix of an envelope is refused as malformed,
// never as an internal error (a reader indexing past the end panics, and Step reports the
// recovered panic as INTERNAL_ERROR).
func TestTruncatedEnvelopesAreBadEnvelopes(t *testing.T) {
	env := `{"op":"authorize","input":{"agentId":"a\"b","action":"read","resource":"r"},"facts":[{"key":"k","results":[` +
		`{"columns":["id","n","x"],"rows":[["a\\u00e9",-12,null],[{"int":"9007199254740993"},1.5,{"blob":"AA=="}],[ "s" , 7 ]]},` +
		`{"rowsAffected":3}]}],"now":1764068400000,"seed":"AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","config":{"agents":{}}}`
	if _, err := decodeEnvelope([]byte(env), &decoding{}); err != nil {
		t.Fatalf("the whole envelope: %v", err)
	}
	for n := 1; n < len(env); n++ {
		var out StepOutput
		if err := json.Unmarshal(Step(context.Background(), []byte(env[:n])), &out); err != nil || out.Error == nil || out.Error.Code != "BAD_ENVELOPE" {
			t.Fatalf("%q: %+v %v", env[:n], out.Error, err)
		}
	}
}

// TestRawInputKeepsItsEscapes: the envelope's strings are unescaped where they are, but the raw
// input (decoded later, by the operation) must keep its bytes, keys included.
func TestRawInputKeepsItsEscapes(t *testing.T) {
	input := `{"age\tId":"a\"b","n":{"k\u0041":["\\",1]},"action":"read"}`
	env := `{"op":"authorize","input":` + input + `,"now":1,"seed":"x\u0079"}`
	in, err := decodeEnvelope([]byte(env), &decoding{})
	if err != nil || string(in.Input) != input || in.Seed != "xy" {
		t.Fatalf("input %s, seed %q, %v", in.Input, in.Seed, err)
	}
}
