package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"testing"

	"github.com/kavachdev/kavach/api"
	"github.com/kavachdev/kavach/api/apitest"
)

var update = flag.Bool("update", false, "regenerate api/apitest/vectors.json from the scenario")

// vectorSteps are the scenario steps recorded as vectors: enough to cover every operation kind,
// agent writes, allowed, denied, rate-limited and token decisions, errors and the audit log.
const vectorSteps = 60

// TestConformanceVectors checks the native build against the committed vectors; the wasm host's
// tests check the module against the same file.
func TestConformanceVectors(t *testing.T) {
	if *update {
		var rec []apitest.Vector
		recording := func(ctx context.Context, env []byte) ([]byte, error) {
			out := api.Step(ctx, env)
			var in api.StepInput
			json.Unmarshal(env, &in)
			rec = append(rec, apitest.Vector{Name: in.Op, Envelope: append([]byte(nil), env...), Output: append([]byte(nil), out...)})
			return out, nil
		}
		db := migrated(t)
		key := createKey(t, db)
		clock := stepNow
		do := apitest.StepDo(recording, db, api.StepConfig{}, func() int64 { return clock })
		steps := 0
		apitest.Run(func(r apitest.Request) (apitest.Response, error) {
			steps++
			if steps > vectorSteps {
				return apitest.Response{}, errStop
			}
			return do(r)
		}, key, func(i int) { clock = stepNow + int64(i)*1000 })
		// One compact vector per line: outputs are compared byte for byte.
		var b bytes.Buffer
		b.WriteString("[\n")
		for i, v := range rec {
			var line bytes.Buffer
			enc := json.NewEncoder(&line)
			enc.SetEscapeHTML(false) // keep the outputs byte for byte
			enc.Encode(v)
			b.Write(bytes.TrimSuffix(line.Bytes(), []byte("\n")))
			if i < len(rec)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString("]\n")
		if err := os.WriteFile("apitest/vectors.json", b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %d vectors", len(rec))
		return
	}
	vectors, err := apitest.LoadVectors()
	if err != nil {
		t.Fatal(err)
	}
	if len(vectors) < 50 {
		t.Fatalf("only %d vectors; regenerate with -update", len(vectors))
	}
	for i, v := range vectors {
		if got := api.Step(context.Background(), v.Envelope); !bytes.Equal(got, v.Output) {
			t.Fatalf("vector %d (%s):\n got %s\nwant %s", i, v.Name, got, v.Output)
		}
	}
}

var errStop = stopError{}

type stopError struct{}

func (stopError) Error() string { return "enough steps recorded" }
