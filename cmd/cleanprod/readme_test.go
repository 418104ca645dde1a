package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

// readmeBlock returns the first ```sh block of README.md containing want.
func readmeBlock(t *testing.T, want string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(m[1], want) {
			return m[1]
		}
	}
	t.Fatalf("README.md has no sh block with %q", want)
	return ""
}

// TestReadmeSample runs the README's mosquitto_pub command, as printed,
// against serve with a real mosquitto and InfluxDB and the shipped fleet:
// the reading lands in canonical units.
func TestReadmeSample(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		if os.Getenv("CLEANPROD_REQUIRE_SERVERS") == "1" {
			t.Fatal("mosquitto_pub not found; scripts/test installs mosquitto-clients")
		}
		t.Skip("mosquitto_pub not found; run scripts/test")
	}
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	startServe(t, map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token},
		"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-gateway_config", "../../gateway-config", "-data_dir", t.TempDir())

	script := readmeBlock(t, "mosquitto_pub")
	script = strings.ReplaceAll(script, "-p 1883", "-p "+strconv.Itoa(broker.Port()))
	out, err := exec.Command("bash", "-euc", script).CombinedOutput()
	if err != nil {
		t.Fatalf("README command failed: %v\n%s", err, out)
	}
	waitFor(t, 20*time.Second, "the README's readings in InfluxDB", func() bool {
		return db.MustCountReadings(t, `enterprise = 'cq-lj-yuntai-auto'`) == 2
	})
	rows := db.QueryInfluxQL(t, `SELECT register FROM reading WHERE meter = 'E-PAINT-01'`)
	if len(rows) != 1 || rows[0][1] != 182734.5 {
		t.Errorf("E-PAINT-01: got %v, want 182734.5 kWh as the README says", rows)
	}
}

// TestReadmeGatewaysCheck runs the README's registry check on the shipped fleet.
func TestReadmeGatewaysCheck(t *testing.T) {
	block := readmeBlock(t, "gateways check")
	args := strings.Fields(strings.TrimSpace(block))
	// go run ./cmd/cleanprod gateways check gateway-config
	if len(args) != 6 || args[3] != "gateways" {
		t.Fatalf("unexpected README command %q", block)
	}
	var out strings.Builder
	if err := run(t.Context(), []string{"gateways", "check", "../../" + args[5]}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
}

// TestReadmeHJ212Frame runs the README's hand-made HJ 212 frame, as
// printed (go run, bash's /dev/tcp), against serve's receiver with the
// shipped fleet: the reply is the frame's 9014, and the values are stored
// for the Hengrun outlet station's meters.
func TestReadmeHJ212Frame(t *testing.T) {
	stations := freeAddr(t)
	s := startServe(t, nil, "-gateway_config", "../../gateway-config", "-embedded_broker.listen", freeAddr(t), "-hj212.listen", stations)
	script := readmeBlock(t, "hj212 frame")
	_, port, _ := strings.Cut(stations, ":")
	script = strings.ReplaceAll(script, "/dev/tcp/127.0.0.1/9212", "/dev/tcp/127.0.0.1/"+port)
	script = strings.ReplaceAll(script, "frame.hj212", filepath.Join(t.TempDir(), "frame.hj212"))
	cmd := exec.Command("bash", "-euc", script)
	cmd.Dir = "../.." // go run ./cmd/cleanprod, from the repository's root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README command failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), ";CN=9014;") || !strings.Contains(string(out), "MN=500112HR0001WW01") {
		t.Fatalf("reply %q, want the frame's 9014", out)
	}
	if got := s.metric(t, `cleanprod_ingest_readings_written_total`); got != 2 {
		t.Errorf("readings written %g, want the frame's COD and flow", got)
	}
}
