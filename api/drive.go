package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/kavachdev/kavach/storage"
)

// StepFunc runs one step: api.Step natively, or the WebAssembly module's dispatcher.
type StepFunc func(ctx context.Context, envelope []byte) ([]byte, error)

// Drive is the host side of the step protocol for Go hosts: it calls step until the operation
// is done, executing each needed batch against db (one round trip each) and then the effects.
// The effects are written before Drive returns, so nothing is lost if the caller stops after.
// It reports how many rounds (batches executed before the answer) the operation took.
func Drive(ctx context.Context, step StepFunc, db storage.DB, in StepInput, maxRounds int) (out StepOutput, rounds int, err error) {
	if in.Seed == "" {
		return out, 0, fmt.Errorf("step: no seed")
	}
	for {
		env, err := json.Marshal(&in)
		if err != nil {
			return out, rounds, err
		}
		raw, err := step(ctx, env)
		if err != nil {
			return out, rounds, err
		}
		out = StepOutput{}
		if err := json.Unmarshal(raw, &out); err != nil {
			return out, rounds, fmt.Errorf("step: malformed output: %w", err)
		}
		switch out.Status {
		case "need":
			if rounds >= maxRounds {
				return out, rounds, fmt.Errorf("step: operation %s needed more than %d rounds", in.Op, maxRounds)
			}
			rounds++
			res, err := db.Exec(ctx, FromWire(out.Stmts)...)
			in.Facts = append(in.Facts, NewFact(out.Key, res, err))
		case "done":
			if len(out.Effects) > 0 {
				if _, err := db.Exec(ctx, FromWire(out.Effects)...); err != nil {
					return out, rounds, fmt.Errorf("step: writing effects: %w", err)
				}
			}
			return out, rounds, nil
		case "error":
			return out, rounds, nil
		default:
			return out, rounds, fmt.Errorf("step: unknown status %q", out.Status)
		}
	}
}

// NewSeed encodes 32 bytes of seed for a step envelope.
func NewSeed(b [32]byte) string { return base64.StdEncoding.EncodeToString(b[:]) }

// ParsePrefixes reads IP addresses and CIDR prefixes, as trusted proxies are configured.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("trusted proxy %q is not an IP address or CIDR prefix", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
