package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/hj212"
)

// BenchmarkHJ212Ingest measures HJ 212 data through the whole service:
// loggers over TCP, the receiver, the decoder, the normaliser, the
// embedded store, and a 9014 back once stored. Each of 8 loggers keeps up
// to 8 minute-data frames (2 meters' values each, 4 values in the frame)
// waiting for their 9014 (a logger with a backlog). It reports frames/s
// and the process's CPU time (service and loggers alike) per frame and
// per million values.
func BenchmarkHJ212Ingest(b *testing.B) {
	const loggers, window = 8, 8
	dir := b.TempDir()
	// One station per logger: 8 MNs on 8 gateways of one plant.
	var yaml []byte
	yaml = append(yaml, "enterprise: {id: bench-plant, name: Bench Plant}\ngateways:\n"...)
	for i := range loggers {
		yaml = fmt.Appendf(yaml, `  - id: ww-%d
    hj212: {mn: BENCH%04d, password: "123456"}
    meters:
      - {id: COD-%d, quantity: cod, unit: mg/L, kind: gauge, flow_meter: FLOW-%d, hj212: {code: w01018, data: minute}}
      - {id: FLOW-%d, quantity: wastewater, unit: m3, kind: delta, hj212: {code: w00000, data: minute}}
`, i, i, i, i, i)
	}
	if err := os.MkdirAll(filepath.Join(dir, "gw"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gw", "plant.yaml"), yaml, 0o644); err != nil {
		b.Fatal(err)
	}
	stations := freeAddr(b)
	startServe(b, nil, "-gateway_config", filepath.Join(dir, "gw"), "-data_dir", filepath.Join(dir, "data"),
		"-embedded_broker.listen", freeAddr(b), "-hj212.listen", stations,
		"-ingest.past_horizon", "2400h")

	codec := hj212.Codec{}
	// Minute data going back from now, one minute per frame and logger.
	start := time.Now().Add(-time.Duration(b.N/loggers+2) * time.Minute).Truncate(time.Minute)
	frame := func(i, n int) []byte {
		cp := codec.FormatData(hj212.Data{Time: start.Add(time.Duration(n) * time.Minute), Values: []hj212.Value{
			{Code: "w01018", Field: "Avg", Value: 20 + float64(n%7), Flag: "N"}, {Code: "w01018", Field: "Max", Value: 30, Flag: "N"},
			{Code: "w00000", Field: "Avg", Value: 0.2, Flag: "N"}, {Code: "w00000", Field: "Cou", Value: 12.5, Flag: "N"},
		}})
		f, err := codec.Encode(hj212.Packet{QN: hj212.NewQN(start.Add(time.Duration(n)*time.Minute), nil), ST: "32", CN: "2051", PW: "123456", MN: fmt.Sprintf("BENCH%04d", i), Flag: 5, CP: cp})
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	per := (b.N + loggers - 1) / loggers
	frames := make([][][]byte, loggers)
	for i := range loggers {
		for n := range per {
			frames[i] = append(frames[i], frame(i, n))
		}
	}
	conns := make([]net.Conn, loggers)
	for i := range conns {
		c, err := net.Dial("tcp", stations)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	cpu0 := cpuTimeB(b)
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, loggers)
	for i, c := range conns {
		wg.Go(func() {
			sem := make(chan struct{}, window)
			done := make(chan error, 1)
			go func() {
				r := bufio.NewReader(c)
				for range frames[i] {
					line, err := r.ReadBytes('\n')
					if err != nil {
						done <- err
						return
					}
					if p, err := codec.Decode(line); err != nil || p.CN != hj212.CNAck {
						done <- fmt.Errorf("reply %q: %v", line, err)
						return
					}
					<-sem
				}
				done <- nil
			}()
			for _, f := range frames[i] {
				sem <- struct{}{}
				if _, err := c.Write(f); err != nil {
					errs <- err
					return
				}
			}
			if err := <-done; err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	total := per * loggers
	cpu := cpuTimeB(b) - cpu0
	b.ReportMetric(float64(total)/elapsed.Seconds(), "frames/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(total), "cpu-ns/frame")
	b.ReportMetric(cpu.Seconds()/float64(total*4)*1e6, "cpu-s/Mvalues")
}

func cpuTimeB(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
