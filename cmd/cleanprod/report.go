package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
	"github.com/cleanprod/cleanprod/web"
)

// reportFlags are the report subcommand's own flags.
type reportFlags struct {
	enterprise, from, to, out, format, server, token string
}

func (f *reportFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.enterprise, "enterprise", "", "enterprise id (required)")
	fs.StringVar(&f.from, "from", "", "start of the period of trends and events: a date (2026-05-01) or an RFC 3339 time (default: 30 days before -to)")
	fs.StringVar(&f.to, "to", "", "end of the period; the assessment is the last one stored at or before it (default: now)")
	fs.StringVar(&f.out, "out", "", "output file; a .pdf name makes a PDF; - writes to standard output (default cleanprod-report-ID-DATE.html)")
	fs.StringVar(&f.format, "format", "", "html or pdf (default: from the -out name, else html)")
	fs.StringVar(&f.server, "server", "", "get the report from a running cleanprod at this URL (e.g. http://127.0.0.1:8080) instead of reading the store")
	fs.StringVar(&f.token, "token", "", "bearer token for -server (default: env CLEANPROD_TOKEN)")
}

// report runs "cleanprod report": an enterprise's cleaner-production audit
// report for a period, as HTML or PDF. Without -server it reads the store
// the configuration names (the scorer's stored evaluations), so it works
// while the service is down, or with InfluxDB while it runs; with -server
// it asks a running service's API.
func report(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var f reportFlags
	cfg, rest, err := loadConfig("report", args, getenv, stderr, f.register)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("report: unexpected arguments %q", rest)
	}
	if f.enterprise == "" {
		return errors.New("report: -enterprise is required")
	}
	if f.format != "" && f.format != "html" && f.format != "pdf" {
		return fmt.Errorf("report: -format %q: want html or pdf", f.format)
	}
	if f.out != "" && f.out != "-" {
		// The name's extension says what the file is: refuse one that would
		// hold something else (a report.docx of HTML, an x.pdf of HTML).
		byName := map[string]string{".html": "html", ".htm": "html", ".pdf": "pdf"}
		ext := strings.ToLower(filepath.Ext(f.out))
		format, known := byName[ext]
		switch {
		case ext != "" && !known:
			return fmt.Errorf("report: -out %q: a report is .html or .pdf, not %s", f.out, ext)
		case ext == "" && f.format == "":
			return fmt.Errorf("report: -out %q has no extension: name it .html or .pdf, or give -format", f.out)
		case known && f.format != "" && f.format != format:
			return fmt.Errorf("report: -out %q is a .%s name but -format is %s", f.out, format, f.format)
		case known:
			f.format = format
		}
	}
	if f.format == "" {
		f.format = "html"
	}
	if f.out == "" {
		f.out = fmt.Sprintf("cleanprod-report-%s-%s.%s", f.enterprise, time.Now().Format("20060102"), f.format)
	}
	var doc []byte
	if f.server != "" {
		if f.token == "" {
			f.token = getenv("CLEANPROD_TOKEN")
		}
		doc, err = fetchReport(ctx, f)
	} else {
		doc, err = renderReport(ctx, cfg, f)
	}
	if err != nil {
		return err
	}
	if f.out == "-" {
		_, err = stdout.Write(doc)
		return err
	}
	if err := os.WriteFile(f.out, doc, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	fmt.Fprintf(stdout, "report of %s written to %s (%s, %d bytes)\n", f.enterprise, f.out, f.format, len(doc))
	return nil
}

// renderReport builds the report from the store.
func renderReport(ctx context.Context, cfg *Config, f reportFlags) ([]byte, error) {
	reg, err := registry.Load(cfg.GatewayConfig)
	if err != nil {
		return nil, fmt.Errorf("gateway registry: %w", err)
	}
	sd, err := loadScoring(cfg)
	if err != nil {
		return nil, err
	}
	loc := time.FixedZone("local", int(sd.std.UTCOffset/time.Second))
	now := time.Now()
	to, err := parseWhen("-to", f.to, now, loc)
	if err != nil {
		return nil, err
	}
	from, err := parseWhen("-from", f.from, to.Add(-30*24*time.Hour), loc)
	if err != nil {
		return nil, err
	}
	if !from.Before(to) {
		return nil, fmt.Errorf("report: -from %s is not before -to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	var pdf web.PDFRenderer
	if f.format == "pdf" {
		if pdf, _, err = pdfRenderer(cfg); err != nil {
			return nil, err
		}
	}
	st, where, err := openStore(cfg)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("report: the embedded store in %s is in use (is cleanprod serve running?); ask the service instead: -server http://%s -token TOKEN", filepath.Clean(cfg.DataDir), cfg.HTTP.Listen)
	}
	if err != nil {
		return nil, err
	}
	defer st.Close()
	doc, err := web.RenderReport(ctx, web.ReportOptions{Registry: reg, Standard: sd.std, Policy: sd.pol, Solutions: sd.lib, Points: st,
		Enterprise: f.enterprise, From: from, To: to, Format: f.format, PDF: pdf, Now: now})
	if err != nil {
		return nil, fmt.Errorf("report of %s from %s: %w", f.enterprise, where, err)
	}
	return doc, nil
}

func parseWhen(name, v string, def time.Time, loc *time.Location) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, v, loc); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("report: %s %q: want a date (2026-05-01) or an RFC 3339 time", name, v)
}

// fetchReport asks a running service for the report.
func fetchReport(ctx context.Context, f reportFlags) ([]byte, error) {
	q := url.Values{"format": {f.format}}
	if f.from != "" {
		q.Set("from", f.from)
	}
	if f.to != "" {
		q.Set("to", f.to)
	}
	u := strings.TrimSuffix(f.server, "/") + "/api/v1/enterprises/" + url.PathEscape(f.enterprise) + "/report?" + q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("report: -server: %w", err)
	}
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized && f.token == "":
			return nil, fmt.Errorf("report: %s needs a token (%s): pass -token TOKEN or set CLEANPROD_TOKEN (cleanprod tokens add prints one; the demo prints its own)", f.server, resp.Status)
		case resp.StatusCode == http.StatusUnauthorized:
			return nil, fmt.Errorf("report: %s refused the token (%s, %s): pass a valid one with -token or CLEANPROD_TOKEN (cleanprod tokens list shows the names of those in force)", f.server, resp.Status, msg)
		case resp.StatusCode == http.StatusForbidden:
			return nil, fmt.Errorf("report: %s answered %s: %s; use a supervisor's token or that enterprise's", f.server, resp.Status, msg)
		}
		return nil, fmt.Errorf("report: %s answered %s: %s", f.server, resp.Status, msg)
	}
	if why := resp.Header.Get(web.PDFUnavailableHeader); why != "" && f.format == "pdf" {
		return nil, fmt.Errorf("report: %s cannot print PDFs (%s); ask for -format html", f.server, why)
	}
	return body, nil
}
