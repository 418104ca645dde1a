package main

import (
	"fmt"
	"log/slog"
	"os/exec"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/web"
)

// apiTokens loads http.tokens_file (nil with a warning when none is set:
// the API then refuses every request).
func apiTokens(cfg *Config, reg *registry.Registry, log *slog.Logger) (*web.Tokens, error) {
	if cfg.HTTP.TokensFile == "" {
		log.Warn("no http.tokens_file: the API and the overview refuse every request (cleanprod tokens add creates one)")
		return nil, nil
	}
	ts, err := web.LoadTokens(cfg.HTTP.TokensFile, reg)
	if err != nil {
		return nil, fmt.Errorf("http.tokens_file: %w", err)
	}
	log.Info("API tokens loaded", "file", cfg.HTTP.TokensFile, "tokens", ts.Len())
	return ts, nil
}

// pdfRenderer picks how report PDFs are made: Chromium printing the HTML
// report when it is there (or configured), else the built-in writer.
func pdfRenderer(cfg *Config) (web.PDFRenderer, string, error) {
	switch cfg.Report.Chromium {
	case "none":
	case "":
		if p := web.FindChromium(); p != "" {
			return web.NewChromium(p), "chromium " + p, nil
		}
	default:
		p, err := exec.LookPath(cfg.Report.Chromium)
		if err != nil {
			return nil, "", fmt.Errorf("report.chromium: %w", err)
		}
		return web.NewChromium(p), "chromium " + p, nil
	}
	b := web.NewBuiltinPDF(cfg.Report.PDFFont)
	if cfg.Report.PDFFont != "" {
		if err := b.Check(); err != nil {
			return nil, "", fmt.Errorf("report.pdf_font: %w", err)
		}
	}
	return b, b.String(), nil
}
