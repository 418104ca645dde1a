package ingest

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Decode rejects payloads nested more than maxDepth levels deep, where
// the encoding/json version accepted up to 10000 levels: the one place
// where the two differ on purpose.
func TestDecodeNesting(t *testing.T) {
	tests := []struct {
		name    string
		depth   int
		wantErr bool
	}{
		{"at the limit", maxDepth, false},
		{"one too deep", maxDepth + 1, true},
		{"far too deep", 5000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := []byte(nestSeed(tt.depth))
			if got := nestingDepth(payload); got != tt.depth {
				t.Fatalf("nestSeed(%d) nests %d levels", tt.depth, got)
			}
			if _, err := decodeRef(payload, 0); err != nil {
				t.Fatalf("encoding/json version: %v", err)
			}
			_, err := Decode(payload, 0)
			var de *DecodeError
			switch {
			case !tt.wantErr && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tt.wantErr && (!errors.As(err, &de) || de.Reason != ReasonMalformed || de.Detail != tooDeepDetail):
				t.Fatalf("got %v, want %s: %s", err, ReasonMalformed, tooDeepDetail)
			}
		})
	}
	if !strings.Contains(tooDeepDetail, " 64 ") || maxDepth != 64 {
		t.Errorf("tooDeepDetail %q does not say maxDepth %d", tooDeepDetail, maxDepth)
	}
}

// The Raw of readings and rejects aliases the payload; appending to it
// must not write into the payload.
func TestDecodeRawAliasesPayload(t *testing.T) {
	payload := []byte(`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1},7]}`)
	orig := string(payload)
	m, err := Decode(payload, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Readings) != 1 || len(m.Rejects) != 1 {
		t.Fatalf("got %d readings and %d rejects, want 1 and 1", len(m.Readings), len(m.Rejects))
	}
	_ = append(m.Readings[0].Raw, "XXXX"...)
	_ = append(m.Rejects[0].Raw, "XXXX"...)
	if string(payload) != orig {
		t.Fatalf("appending to Raw changed the payload to %s", payload)
	}
	if got := string(m.Rejects[0].Raw); got != "7" {
		t.Errorf("got reject Raw %q, want %q", got, "7")
	}
}

// daysSinceEpoch agrees with the time package on every day of the years
// RFC 3339 can write, 0000 to 9999.
func TestDaysSinceEpoch(t *testing.T) {
	day := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	for day.Year() < 10000 {
		y, m, d := day.Date()
		if got, want := daysSinceEpoch(y, int(m), d), day.Unix()/86400; got != want {
			t.Fatalf("daysSinceEpoch(%d, %d, %d) = %d, want %d", y, m, d, got, want)
		}
		day = day.AddDate(0, 0, 1)
	}
}
