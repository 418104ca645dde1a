package web

import (
	"encoding"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// openAPI serves the OpenAPI 3 description, generated from the route
// table and the Go types of the JSON bodies, so it cannot drift from
// what the server does.
func (s *server) openAPI(c *gin.Context) {
	c.JSON(http.StatusOK, OpenAPI(s.routes()))
}

var ginParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// OpenAPIPath converts a gin path (/a/:id) to an OpenAPI one (/a/{id}).
func OpenAPIPath(p string) string { return ginParam.ReplaceAllString(p, "{$1}") }

// apiDescription is the description of the whole API: auth, errors,
// pages and the time-zone convention (date.go).
const apiDescription = "A continuous cleaner-production audit: enterprises, indicators, rankings, events, declarations, the indicator standard and the instant audit report. Bearer tokens come from the tokens file (http.tokens_file); a supervisor token sees every enterprise, an enterprise token its own. Errors are JSON {\"error\": {\"code\", \"message\"}}. " +
	"Lists are paged: limit (each list's default and maximum are on its parameter) and cursor, the next_cursor of the previous page; an answer adds has_more and, while it is true, next_cursor. Items are ordered by their own keys and a cursor holds the last one sent, so a walk returns every item once even while items are added; an altered cursor, one of another list or other filters, or one from before a restart is a 400. " +
	"Times: an instant is RFC 3339 with its offset (format date-time); a calendar date (format date: last_audit, next_audit_due, valid_from, valid_to, a case's deadline, takes_effect_on) is YYYY-MM-DD, the day in the platform's zone, the standard's data.utc_offset (UTC+8 in the shipped standard; GET /api/v1/standard gives it as method.utc_offset_hours). Inputs take a date (the start of that day in that zone; a case's deadline: its end) or an RFC 3339 time."

// OpenAPI builds the OpenAPI 3.0 document of rs.
func OpenAPI(rs []route) map[string]any {
	g := &schemaGen{schemas: map[string]any{}}
	errRef := g.schema(reflect.TypeOf(errorBody{}))
	paths := map[string]any{}
	for _, rt := range rs {
		op := map[string]any{
			"operationId": operationID(rt),
			"summary":     rt.summary,
			"tags":        []string{rt.tag},
		}
		if rt.description != "" {
			op["description"] = rt.description
		}
		var params []any
		for _, p := range rt.params {
			typ := p.typ
			if typ == "" {
				typ = "string"
			}
			sch := map[string]any{"type": typ}
			if len(p.enum) > 0 {
				sch["enum"] = p.enum
			}
			params = append(params, map[string]any{"name": p.name, "in": p.in, "description": p.desc, "required": p.required || p.in == "path", "schema": sch})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.body != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(rt.body))}}}
		}
		status := rt.status
		if status == 0 {
			status = http.StatusOK
		}
		produces := rt.produces
		if produces == nil {
			produces = []string{"application/json"}
		}
		content := map[string]any{}
		for _, ct := range produces {
			switch {
			case ct == "application/json" && rt.out != nil:
				content[ct] = map[string]any{"schema": g.schema(reflect.TypeOf(rt.out))}
			case ct == "application/json":
				content[ct] = map[string]any{"schema": map[string]any{"type": "object"}}
			case ct == "application/pdf":
				content[ct] = map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}
			default:
				content[ct] = map[string]any{"schema": map[string]any{"type": "string"}}
			}
		}
		errResp := func(what string) map[string]any {
			return map[string]any{"description": what, "content": map[string]any{"application/json": map[string]any{"schema": errRef}}}
		}
		responses := map[string]any{strconv.Itoa(status): map[string]any{"description": http.StatusText(status), "content": content}}
		if len(rt.params) > 0 || rt.body != nil {
			responses["400"] = errResp("a malformed parameter or body")
		}
		if rt.access != public {
			responses["401"] = errResp("no token, or a token that is not valid")
			op["security"] = []any{map[string]any{"bearer": []string{}}}
		} else {
			op["security"] = []any{}
		}
		if rt.access == ownEnterprise || hasParam(rt, "enterprise") {
			responses["403"] = errResp("an enterprise token asking for another enterprise")
			responses["404"] = errResp("no such enterprise (or indicator)")
		}
		if rt.body != nil {
			responses["413"] = errResp("body too large")
			responses["415"] = errResp("not application/json")
			responses["422"] = errResp("refused by the standard (unknown indicator, wrong kind, missing evidence, ...)")
		}
		if rt.path == "/readyz" {
			responses["503"] = map[string]any{"description": "not ready", "content": content}
		}
		op["responses"] = responses
		p := OpenAPIPath(rt.path)
		item, _ := paths[p].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[p] = item
		}
		item[strings.ToLower(rt.method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "cleanprod",
			"version":     "v1",
			"description": apiDescription,
		},
		"paths": paths,
		"components": map[string]any{
			"schemas":         g.schemas,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
		},
	}
}

func hasParam(rt route, name string) bool {
	for _, p := range rt.params {
		if p.name == name {
			return true
		}
	}
	return false
}

func operationID(rt route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.method))
	for _, part := range strings.FieldsFunc(rt.path, func(r rune) bool { return r == '/' || r == '.' || r == '_' }) {
		part = strings.TrimPrefix(part, ":")
		if part == "api" || part == "v1" || part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	if rt.path == "/" {
		b.WriteString("Overview")
	}
	return b.String()
}

// schemaGen derives JSON schemas from Go types the way encoding/json
// encodes them; named structs become components.
type schemaGen struct {
	schemas map[string]any
}

var (
	timeType          = reflect.TypeOf(time.Time{})
	dateType          = reflect.TypeOf(Date{})
	textMarshalerType = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
)

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == dateType:
		return map[string]any{"type": "string", "format": "date", "example": "2026-12-06"}
	case t.Kind() != reflect.Pointer && t.Implements(textMarshalerType):
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := g.schema(t.Elem())
		if ref, ok := s["$ref"]; ok {
			return map[string]any{"allOf": []any{map[string]any{"$ref": ref}}, "nullable": true}
		}
		s["nullable"] = true
		return s
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Array:
		return map[string]any{"type": "array", "items": g.schema(t.Elem()), "minItems": t.Len(), "maxItems": t.Len()}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		name := t.Name()
		if _, ok := g.schemas[name]; !ok {
			g.schemas[name] = nil // placeholder against recursion
			props, required := map[string]any{}, []string{}
			g.fields(t, props, &required)
			s := map[string]any{"type": "object", "properties": props}
			if len(required) > 0 {
				s["required"] = required
			}
			g.schemas[name] = s
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

// fields adds t's JSON fields, flattening embedded structs as
// encoding/json does.
func (g *schemaGen) fields(t reflect.Type, props map[string]any, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			g.fields(f.Type, props, required)
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(f.Type)
		if !strings.Contains(opts, "omit") {
			*required = append(*required, name)
		}
	}
}
