package testenv

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseFluxCSV(t *testing.T) {
	ts := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		csv     string
		want    []map[string]any
		wantErr string
	}{
		{
			name: "two blocks",
			csv: "#datatype,string,long,dateTime:RFC3339,double,string\r\n" +
				"#group,false,false,false,false,true\r\n" +
				"#default,_result,,,,\r\n" +
				",result,table,_time,_value,meter\r\n" +
				",,0,2024-01-01T12:00:00Z,1.5,m1\r\n" +
				",,1,2024-01-01T12:00:00Z,,m2\r\n" +
				"\r\n" +
				"#datatype,string,long,long,boolean,unsignedLong\r\n" +
				"#group,false,false,false,false,false\r\n" +
				"#default,_result,,,,\r\n" +
				",result,table,_value,ok,n\r\n" +
				",,2,7,true,18446744073709551615\r\n\r\n",
			want: []map[string]any{
				{"result": "_result", "table": int64(0), "_time": ts, "_value": 1.5, "meter": "m1"},
				{"result": "_result", "table": int64(1), "_time": ts, "_value": nil, "meter": "m2"},
				{"result": "_result", "table": int64(2), "_value": int64(7), "ok": true, "n": uint64(18446744073709551615)},
			},
		},
		{
			name: "empty result",
			csv:  "\r\n",
		},
		{
			name: "error block",
			csv: "#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n,error,reference\r\n" +
				",\"bucket \"\"no/such\"\" not found\",\r\n\r\n",
			wantErr: `bucket "no/such" not found`,
		},
		{
			name:    "no annotations",
			csv:     ",result,table\r\n,_result,0\r\n",
			wantErr: "no #datatype",
		},
		{
			name:    "bad value",
			csv:     "#datatype,string,long\r\n,result,table\r\n,_result,x\r\n",
			wantErr: "column table",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFluxCSV(strings.NewReader(tt.csv))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestQueryErrors checks that server-side errors come back as errors.
func TestQueryErrors(t *testing.T) {
	db := Influx(t)
	if _, err := fluxQuery(db.URL, db.Token, `from(bucket: "no/such") |> range(start: -1h)`); err == nil {
		t.Error("Flux on a missing bucket: got no error")
	}
	if _, err := influxQL(db.URL, db.Token, db.Database, `SELECT FROM`); err == nil {
		t.Error("bad InfluxQL: got no error")
	}
	if _, err := influxQL(db.URL, "admin:wrong", db.Database, `SHOW MEASUREMENTS`); err == nil {
		t.Error("InfluxQL with a wrong password: got no error")
	}
}
