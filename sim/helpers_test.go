package sim_test

import (
	"os"
	"testing"
	"time"
)

func fixedNow(start time.Time) func() time.Time {
	return func() time.Time { return start.Add(400 * 24 * time.Hour) }
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
