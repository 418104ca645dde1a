package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/sim"
)

// TestDemoInstalled runs "cleanprod demo" as a newcomer does after go
// install: a built binary, started in an empty folder (no gateway-config/,
// no scoring/ beside it), on free ports. Within its first minutes it
// stores readings, dead-letters the faults its simulator injects, says
// when the history is loaded, and grades one enterprise green and one red
// from the simulated history; then the README's demo message to the
// gateway the simulator leaves silent is stored, and Ctrl-C stops it.
func TestDemoInstalled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and replays 45 days of a fleet")
	}
	bin := filepath.Join(t.TempDir(), "cleanprod")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	httpAddr, brokerAddr, stations := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "-http.listen", httpAddr, "-embedded_broker.listen", brokerAddr, "-hj212.listen", stations, "-log.level", "warn")
	cmd.Dir = t.TempDir() // empty
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLEANPROD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s := &service{http: httpAddr, logs: out}
	// wait polls cond every half second for up to d.
	wait := func(d time.Duration, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			select {
			case err := <-exited:
				t.Fatalf("demo exited while waiting for %s: %v\n%s", what, err, out)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s within %s\n%s", what, d, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	// The dead-letter topic the demo names shows the injected faults.
	wait(60*time.Second, "dead-letter hint", func() bool { return strings.Contains(out.String(), "-t 'cp/v1/deadletter/#'") })
	var deadLetters atomic.Int64
	watcher, err := sim.Dial(ctx, "tcp://"+brokerAddr, "deadletter-watcher")
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Disconnect(250)
	if tok := watcher.Subscribe("cp/v1/deadletter/#", 0, func(mqtt.Client, mqtt.Message) { deadLetters.Add(1) }); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	wait(60*time.Second, "readings written", func() bool { return s.metricOrZero("cleanprod_ingest_readings_written_total") >= 1000 })
	wait(60*time.Second, "dead-letter on cp/v1/deadletter/#", func() bool { return deadLetters.Load() > 0 })
	faults := regexp.MustCompile(`\| [1-9][0-9]* faults \|`)
	wait(60*time.Second, "progress line counting injected faults", func() bool { return faults.MatchString(out.String()) })

	token := regexp.MustCompile(`(?m)^  supervisor +(cp_\S+)$`).FindStringSubmatch(out.String())
	if token == nil {
		t.Fatalf("the demo printed no supervisor token:\n%s", out)
	}
	codes := func() map[string]string {
		req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/api/v1/enterprises", nil)
		req.Header.Set("Authorization", "Bearer "+token[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var list struct {
			Enterprises []struct{ ID, Code string }
		}
		if json.NewDecoder(resp.Body).Decode(&list) != nil {
			return nil
		}
		byCode := map[string]string{}
		for _, e := range list.Enterprises {
			byCode[e.Code] = e.ID
		}
		return byCode
	}
	// How long the history takes is the machine's (a benchmark's
	// question, not this test's): wait while the simulator's progress
	// lines keep coming, and fail on a stall.
	progress := regexp.MustCompile(`(?m)^sim \d{4}-\d\d-\d\d `)
	seen, moved := 0, time.Now()
	wait(20*time.Minute, "history loaded line", func() bool {
		text := out.String()
		if n := len(progress.FindAllStringIndex(text, -1)); n > seen {
			seen, moved = n, time.Now()
		} else if time.Since(moved) > 90*time.Second {
			t.Fatalf("the simulator's history stalled: no progress line for 90 s and no history loaded line\n%s", text)
		}
		return strings.Contains(text, "history loaded: 45 days of 4 enterprises")
	})
	wait(time.Minute, "green and red code", func() bool { c := codes(); return c["green"] != "" && c["red"] != "" })
	t.Logf("codes after the history: %v", codes())

	// The README's message for a running demo goes to a gateway the
	// simulator leaves silent: its reading is stored as sent.
	script := readmeBlock(t, "gw-boiler-01")
	msg := regexp.MustCompile(`(?s)-m '(.*)'`).FindStringSubmatch(script)
	value := regexp.MustCompile(`"value": ([0-9.]+)`).FindStringSubmatch(script)
	if msg == nil || value == nil {
		t.Fatalf("README's block for the demo has no -m '...' message with a value:\n%s", script)
	}
	ts := time.Now().UTC().Format(time.RFC3339)
	payload := strings.ReplaceAll(msg[1], `'"$ts"'`, ts)
	pub, err := sim.Dial(ctx, "tcp://"+brokerAddr, "readme-gateway")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(250)
	if tok := pub.Publish("cp/v1/cq-lj-yuntai-auto/gw-boiler-01/telemetry", 1, false, payload); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	wait(30*time.Second, "the README's reading stored", func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/api/v1/enterprises/cq-lj-yuntai-auto/meters", nil)
		req.Header.Set("Authorization", "Bearer "+token[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ms struct {
			Meters []struct {
				ID        string
				LastValue *float64 `json:"last_value"`
			}
		}
		if json.NewDecoder(resp.Body).Decode(&ms) != nil {
			return false
		}
		for _, m := range ms.Meters {
			if m.ID == "BOILER-NOX-01" && m.LastValue != nil {
				return strconv.FormatFloat(*m.LastValue, 'f', -1, 64) == value[1]
			}
		}
		return false
	})

	// A clean start logs no error; its warnings are the injected faults'
	// rejections.
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") && !strings.Contains(line, `msg="rejected input"`) {
			t.Errorf("unexpected log line: %s", line)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("demo exited with %v after Ctrl-C\n%s", err, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("demo did not stop within 30s of Ctrl-C\n%s", out)
	}
}
