package apitest

import (
	_ "embed"
	"encoding/json"
)

// Vector is one step of the protocol with the output it must produce on every build: the
// envelope carries its facts, now and seed, so the output is fully determined.
type Vector struct {
	Name     string          `json:"name"`
	Envelope json.RawMessage `json:"envelope"`
	Output   json.RawMessage `json:"output"`
}

// Vectors is the embedded vectors.json, generated from the scenario by
// `go test ./api -run TestConformanceVectors -update`.
//
//go:embed vectors.json
var Vectors []byte

// LoadVectors parses Vectors.
func LoadVectors() ([]Vector, error) {
	var v []Vector
	err := json.Unmarshal(Vectors, &v)
	return v, err
}
