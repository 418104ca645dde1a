package testenv

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// httpClient talks to the test servers; the timeout only stops a hung
// server from hanging the test binary.
var httpClient = &http.Client{Timeout: 2 * time.Minute}

// do sends req and returns the response body, or an error naming the status
// and body when the status is not want.
func do(req *http.Request, want int) ([]byte, error) {
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// influxQL runs q on the server at baseURL through POST /query, in database
// db if not empty, authenticated with token if not empty, and returns the
// rows of all series of all statements.
func influxQL(baseURL, token, db, q string) ([][]any, error) {
	form := url.Values{"q": {q}}
	if db != "" {
		form.Set("db", db)
	}
	req, err := http.NewRequest(http.MethodPost, baseURL+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("Authorization", "Token "+token)
	}
	body, err := do(req, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Error   string
		Results []struct {
			Error  string
			Series []struct {
				Values [][]any
			}
		}
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	var rows [][]any
	for _, r := range resp.Results {
		if r.Error != "" {
			return nil, errors.New(r.Error)
		}
		for _, s := range r.Series {
			rows = append(rows, s.Values...)
		}
	}
	return rows, nil
}

// fluxQuery runs a Flux query on the server at baseURL through POST
// /api/v2/query and returns the rows of the annotated CSV result. InfluxDB
// 1.8 annotates CSV by default.
func fluxQuery(baseURL, token, flux string) ([]map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, baseURL+"/api/v2/query", strings.NewReader(flux))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/vnd.flux")
	req.Header.Set("Accept", "application/csv")
	req.Header.Set("Authorization", "Token "+token)
	body, err := do(req, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return parseFluxCSV(bytes.NewReader(body))
}

// parseFluxCSV parses Flux's annotated CSV: blocks of tables, each block
// starting with annotation rows ("#datatype", "#group", "#default"), then a
// header row, then data rows. The first column of every row is the
// annotation column and is dropped. An error block (columns "error",
// "reference") becomes an error.
func parseFluxCSV(r io.Reader) ([]map[string]any, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // blocks differ in width
	var (
		types, defaults, header []string
		rows                    []map[string]any
	)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse Flux CSV: %w", err)
		}
		switch {
		case strings.HasPrefix(rec[0], "#"):
			switch rec[0] {
			case "#datatype":
				types, defaults, header = rec, nil, nil // a new block
			case "#default":
				defaults = rec
			}
			continue
		case header == nil:
			if types == nil {
				return nil, errors.New("parse Flux CSV: no #datatype annotation")
			}
			header = rec
			continue
		case len(header) > 1 && header[1] == "error":
			return nil, fmt.Errorf("flux: %s", rec[1])
		}
		if len(rec) != len(header) || len(rec) != len(types) {
			return nil, fmt.Errorf("parse Flux CSV: row has %d fields, header %d", len(rec), len(header))
		}
		row := make(map[string]any, len(header)-1)
		for i := 1; i < len(rec); i++ {
			cell := rec[i]
			if cell == "" && i < len(defaults) {
				cell = defaults[i]
			}
			v, err := fluxValue(types[i], cell)
			if err != nil {
				return nil, fmt.Errorf("parse Flux CSV: column %s: %w", header[i], err)
			}
			row[header[i]] = v
		}
		rows = append(rows, row)
	}
}

// fluxValue converts a CSV cell of the given Flux datatype. An empty cell of
// a non-string type is null (nil).
func fluxValue(datatype, cell string) (any, error) {
	if cell == "" && datatype != "string" {
		return nil, nil
	}
	switch {
	case datatype == "long":
		return strconv.ParseInt(cell, 10, 64)
	case datatype == "unsignedLong":
		return strconv.ParseUint(cell, 10, 64)
	case datatype == "double":
		return strconv.ParseFloat(cell, 64)
	case datatype == "boolean":
		return strconv.ParseBool(cell)
	case strings.HasPrefix(datatype, "dateTime"):
		return time.Parse(time.RFC3339Nano, cell)
	default: // string, duration, base64Binary
		return cell, nil
	}
}
