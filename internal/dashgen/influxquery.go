package dashgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
)

// InfluxType is the Grafana plugin id of the InfluxDB datasource, for
// both its Flux and InfluxQL modes.
const InfluxType = "influxdb"

// InfluxQuery is a target of Grafana's InfluxDB datasource: a Flux query,
// or a raw InfluxQL query (RawQuery true). The foundation SDK has no type
// for it, so this is the subset of the plugin's query model the dashboards
// use; InfluxVariant makes strict decoding reject anything else.
type InfluxQuery struct {
	RefID      string                `json:"refId"`
	Hide       *bool                 `json:"hide,omitempty"`
	Datasource *common.DataSourceRef `json:"datasource,omitempty"`
	Query      string                `json:"query"`
	// RawQuery marks an InfluxQL query written as text (Flux ignores it).
	RawQuery bool `json:"rawQuery,omitempty"`
	// ResultFormat is "time_series" or "table" (InfluxQL only).
	ResultFormat string `json:"resultFormat,omitempty"`
	// Alias names InfluxQL series, e.g. "$tag_meter".
	Alias string `json:"alias,omitempty"`
}

// ImplementsDataqueryVariant marks InfluxQuery as a dataquery.
func (InfluxQuery) ImplementsDataqueryVariant() {}

// DataqueryType returns the plugin id.
func (InfluxQuery) DataqueryType() string { return InfluxType }

// Equals reports whether other is the same query.
func (q InfluxQuery) Equals(other variants.Dataquery) bool {
	o, ok := other.(InfluxQuery)
	if !ok {
		return false
	}
	a, _ := json.Marshal(q)
	b, _ := json.Marshal(o)
	return bytes.Equal(a, b)
}

// Validate checks that the query can run.
func (q InfluxQuery) Validate() error {
	var errs []error
	if q.RefID == "" {
		errs = append(errs, errors.New("refId is empty"))
	}
	if q.Query == "" {
		errs = append(errs, errors.New("query is empty"))
	}
	switch q.ResultFormat {
	case "", "time_series", "table":
	default:
		errs = append(errs, fmt.Errorf("resultFormat %q: want time_series or table", q.ResultFormat))
	}
	if q.Datasource == nil || q.Datasource.Uid == nil || q.Datasource.Type == nil || *q.Datasource.Type != InfluxType {
		errs = append(errs, errors.New("datasource must name an influxdb datasource by uid"))
	}
	return errors.Join(errs...)
}

// InfluxVariant lets the foundation SDK decode InfluxDB targets: strictly
// (unknown fields are errors) with StrictDataqueryUnmarshaler. Register it
// with cog.NewRuntime().RegisterDataqueryVariant.
func InfluxVariant() variants.DataqueryConfig {
	return variants.DataqueryConfig{
		Identifier: InfluxType,
		DataqueryUnmarshaler: func(raw []byte) (variants.Dataquery, error) {
			var q InfluxQuery
			err := json.Unmarshal(raw, &q)
			return q, err
		},
		StrictDataqueryUnmarshaler: func(raw []byte) (variants.Dataquery, error) {
			var q InfluxQuery
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&q); err != nil {
				return nil, fmt.Errorf("influxdb target: %w", err)
			}
			return q, nil
		},
	}
}

// influxBuilder builds an InfluxQuery for the dashboard builders.
type influxBuilder struct{ q InfluxQuery }

var _ cog.Builder[variants.Dataquery] = (*influxBuilder)(nil)

func (b *influxBuilder) Build() (variants.Dataquery, error) {
	if err := b.q.Validate(); err != nil {
		return nil, cog.MakeBuildErrors("influxdb", err)
	}
	return b.q, nil
}

// flux returns a Flux target on the Flux datasource.
func flux(refID, query string) *influxBuilder {
	return &influxBuilder{InfluxQuery{RefID: refID, Datasource: fluxDS(), Query: query}}
}

// influxQL returns a raw InfluxQL target on the InfluxQL datasource;
// format is "time_series" or "table".
func influxQL(refID, query, format, alias string) *influxBuilder {
	return &influxBuilder{InfluxQuery{RefID: refID, Datasource: influxQLDS(), Query: query, RawQuery: true,
		ResultFormat: format, Alias: alias}}
}
