package broker

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a bytes.Buffer safe for the broker's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCleanStartLogsNoError: the first start on an empty data folder
// (mochi finds no stored $SYS statistics) and a restart on it log no
// ERROR or WARN record at the info level; at the debug level the missing
// key is still there to see.
func TestCleanStartLogsNoError(t *testing.T) {
	dir := t.TempDir()
	for i, level := range []slog.Level{slog.LevelInfo, slog.LevelInfo, slog.LevelDebug} {
		var out lockedBuffer
		b, err := Start(Config{Addr: "127.0.0.1:0", DataDir: dir}, slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: level})))
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
		log := out.String()
		if level == slog.LevelInfo && (strings.Contains(log, "level=ERROR") || strings.Contains(log, "level=WARN")) {
			t.Errorf("start %d: the log has errors or warnings:\n%s", i+1, log)
		}
		if i == 0 && !strings.Contains(log, "mochi mqtt server started") {
			t.Errorf("start %d: the broker's own records are gone:\n%s", i+1, log)
		}
	}
	// A fresh folder at debug: the lowered record is kept.
	var out lockedBuffer
	b, err := Start(Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if log := out.String(); !strings.Contains(log, `level=DEBUG msg="failed to get data"`) || strings.Contains(log, "level=ERROR") {
		t.Errorf("debug level: want the missing key at DEBUG:\n%s", log)
	}
}
