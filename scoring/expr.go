package scoring

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/cleanprod/cleanprod/internal/yamlfile"
	"github.com/cleanprod/cleanprod/registry"
)

// Formulas are arithmetic over canonical quantities, factors and limits:
//
//	(electricity*kgce.electricity + natural_gas*kgce.natural_gas)/vehicles
//	recycled_water/(recycled_water+fresh_water)*100
//	electricity@paint            electricity metered in the paint workshop
//	load(cod)                    COD load in kg: concentration x paired flow
//	load(cod, raw_wastewater)    only the pairs whose flow meter is raw_wastewater
//	compliance(cod, limit.cod_sewer)   % of meter-days whose daily mean <= limit (the meter's permit_limit where it has one)
//	compliance(ph, 6, 9)         % of meter-days whose daily mean is in [6, 9]
//	mean(voc)                    mean of every reading in the window
//	abatement(voc_inlet, voc)    % removed: 1 - outlet load / inlet load, over
//	                             the flows that carry both analysers
//	coverage(electricity)        % of window buckets with at least one reading
//	min(a, b, ...), max(a, b, ...), coalesce(x, 0)
//
// A bare name is the window total of an extensive quantity (a counter or
// delta meter); for a workshop-scoped name q@w only meters of workshop w
// count, and for a bare q the site meters (no workshop) count, or, if the
// enterprise has none for q, all its workshop meters. A concentration never
// stands bare: it takes load, compliance or mean.
//
// A series the enterprise has no meter for is absent. Absent propagates:
// x+absent = x, absent+absent = absent, and * / and functions of an absent
// operand are absent, except that min and max skip absent arguments and
// coalesce(x, d) replaces an absent x by d. An indicator whose formula is
// absent, or that needs a series listed in requires the enterprise has no
// meter for, has insufficient data.

// SeriesKind is how a formula reads a quantity.
type SeriesKind uint8

// Series kinds.
const (
	SeriesSum   SeriesKind = iota // window total of an extensive quantity
	SeriesLoad                    // load of a concentration over its paired flow, kg
	SeriesGauge                   // per-meter readings of a gauge (mean, compliance)
)

// Series is one input of formulas: a quantity, optionally scoped to a
// workshop and, for loads, to the quantity of the paired flow meter.
type Series struct {
	Kind     SeriesKind
	Quantity string
	Workshop string // "" for the whole site
	Flow     string // SeriesLoad only: flow quantity filter ("" for any)
	// With restricts a SeriesLoad to flow meters that also carry an
	// analyser of this quantity (abatement compares inlet and outlet on
	// the same flows).
	With string
}

// String returns the series as written in formulas, e.g. "load(cod@paint)"
// or "electricity@paint" (gauge readings are named by their quantity).
func (s Series) String() string {
	q := s.Quantity
	if s.Workshop != "" {
		q += "@" + s.Workshop
	}
	if s.Kind == SeriesLoad {
		switch {
		case s.With != "":
			return "load(" + q + " where " + s.With + " is measured)"
		case s.Flow != "":
			return "load(" + q + ", " + s.Flow + ")"
		}
		return "load(" + q + ")"
	}
	return q
}

type op uint8

const (
	opNum op = iota
	opConst
	opSum
	opLoad
	opMean
	opCompliance
	opCoverage
	opNeg
	opAdd
	opSub
	opMul
	opDiv
	opMin
	opMax
	opCoalesce
)

// expr is a compiled formula node. Series and constants are indexes into
// the standard's tables, so evaluation does not allocate.
type expr struct {
	op     op
	num    float64 // opNum
	idx    int     // series index (opSum, opLoad, opMean, opCompliance, opCoverage) or constant index (opConst)
	lo, hi float64 // opCompliance bounds (lo may be -Inf)
	// permit: opCompliance's upper bound is a limit, which a meter's own
	// discharge permit limit (registry permit_limit) replaces.
	permit bool
	args   []*expr
}

// evalEnv supplies the values of one enterprise's window to a formula.
// present is false when the enterprise has no meter for the series.
type evalEnv interface {
	sum(series int) (v float64, present bool)
	load(series int) (v float64, present bool)
	mean(series int) (v float64, present bool)
	compliance(series int, lo, hi float64, permit bool) (v float64, present bool)
	coverage(series int) (v float64, present bool)
	constant(i int) float64
}

// eval returns the value and whether it is present (see the package
// comment on absent series). Division by zero yields ±Inf or NaN, which the
// caller treats as insufficient data.
func (e *expr) eval(env evalEnv) (float64, bool) {
	switch e.op {
	case opNum:
		return e.num, true
	case opConst:
		return env.constant(e.idx), true
	case opSum:
		return env.sum(e.idx)
	case opLoad:
		return env.load(e.idx)
	case opMean:
		return env.mean(e.idx)
	case opCompliance:
		return env.compliance(e.idx, e.lo, e.hi, e.permit)
	case opCoverage:
		return env.coverage(e.idx)
	case opNeg:
		v, ok := e.args[0].eval(env)
		return -v, ok
	case opAdd, opSub:
		a, aok := e.args[0].eval(env)
		b, bok := e.args[1].eval(env)
		switch {
		case aok && bok:
			if e.op == opAdd {
				return a + b, true
			}
			return a - b, true
		case aok:
			return a, true
		case bok:
			if e.op == opAdd {
				return b, true
			}
			return -b, true
		}
		return 0, false
	case opMul, opDiv:
		a, aok := e.args[0].eval(env)
		b, bok := e.args[1].eval(env)
		if !aok || !bok {
			return 0, false
		}
		if e.op == opMul {
			return a * b, true
		}
		return a / b, true
	case opMin, opMax:
		var out float64
		found := false
		for _, a := range e.args {
			v, ok := a.eval(env)
			if !ok {
				continue
			}
			if !found || (e.op == opMin && v < out) || (e.op == opMax && v > out) {
				out = v
			}
			found = true
		}
		return out, found
	case opCoalesce:
		if v, ok := e.args[0].eval(env); ok {
			return v, true
		}
		return e.args[1].eval(env)
	}
	return math.NaN(), false
}

// visitSeries calls f for every series index the expression reads.
func (e *expr) visitSeries(f func(idx int)) {
	switch e.op {
	case opSum, opLoad, opMean, opCompliance, opCoverage:
		f(e.idx)
	}
	for _, a := range e.args {
		a.visitSeries(f)
	}
}

// visitConsts calls f for every constant index the expression reads.
func (e *expr) visitConsts(f func(idx int)) {
	if e.op == opConst {
		f(e.idx)
	}
	for _, a := range e.args {
		a.visitConsts(f)
	}
}

// symbols resolves the names a formula may use. It is implemented by the
// standard being loaded.
type symbols interface {
	// series returns the index of s, adding it if new.
	series(s Series) int
	// constant returns the index and value of a factor or limit id such as
	// "kgce.electricity" or "limit.cod_sewer"; fixed is false for factors
	// that depend on the enterprise (grid CO2 by region and year), whose
	// value is only known at evaluation.
	constant(id string) (idx int, value float64, fixed bool, err error)
	// limitQuantity returns the quantity a limit applies to ("" when id is
	// not a limit).
	limitQuantity(id string) string
}

// atRE matches the workshop scope "quantity@workshop", which is not Go
// syntax; it is rewritten to one identifier before parsing.
var atRE = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*@\s*([A-Za-z_][A-Za-z0-9_]*)`)

const atSep = "__at__"

// compileFormula parses and checks src against the quantity registry and
// the symbols, returning the compiled expression and the series it reads.
func compileFormula(src string, sym symbols) (*expr, error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("formula is empty")
	}
	if strings.Contains(src, atSep) {
		return nil, fmt.Errorf("formula %q: %q is reserved", src, atSep)
	}
	rewritten := atRE.ReplaceAllString(src, "${1}"+atSep+"${2}")
	if strings.Contains(rewritten, "@") {
		return nil, fmt.Errorf("formula %q: '@' must join a quantity and a workshop, as in electricity@paint", src)
	}
	node, err := parser.ParseExpr(rewritten)
	if err != nil {
		msg := err.Error()
		if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "1:") {
			msg = msg[i+2:]
		}
		return nil, fmt.Errorf("formula %q: syntax: %s", src, strings.ReplaceAll(msg, atSep, "@"))
	}
	c := &compiler{src: src, sym: sym}
	e := c.compile(node)
	if c.err != nil {
		return nil, c.err
	}
	return e, nil
}

type compiler struct {
	src string
	sym symbols
	err error
}

func (c *compiler) fail(format string, args ...any) *expr {
	if c.err == nil {
		c.err = fmt.Errorf("formula %q: %s", c.src, fmt.Sprintf(format, args...))
	}
	return &expr{op: opNum, num: math.NaN()}
}

// name splits a rewritten identifier into quantity and workshop.
func splitName(id string) (q, workshop string) {
	q, workshop, _ = strings.Cut(id, atSep)
	return q, workshop
}

func pretty(id string) string { return strings.ReplaceAll(id, atSep, "@") }

func (c *compiler) compile(n ast.Expr) *expr {
	switch n := n.(type) {
	case *ast.ParenExpr:
		return c.compile(n.X)
	case *ast.BasicLit:
		if n.Kind != token.INT && n.Kind != token.FLOAT {
			return c.fail("%s is not a number", n.Value)
		}
		v, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			return c.fail("number %s: %v", n.Value, err)
		}
		return &expr{op: opNum, num: v}
	case *ast.Ident:
		q, ok := c.quantity(n.Name)
		if !ok {
			return c.fail("")
		}
		if !q.Extensive {
			return c.fail("%s is a concentration or level, not an amount; use load(%[1]s), mean(%[1]s) or compliance(%[1]s, limit)", pretty(n.Name))
		}
		qn, ws := splitName(n.Name)
		return &expr{op: opSum, idx: c.sym.series(Series{Kind: SeriesSum, Quantity: qn, Workshop: ws})}
	case *ast.SelectorExpr:
		id, ok := selectorID(n)
		if !ok {
			return c.fail("%s: want a factor or limit such as kgce.electricity", types(n))
		}
		idx, _, _, err := c.sym.constant(id)
		if err != nil {
			return c.fail("%v", err)
		}
		return &expr{op: opConst, idx: idx}
	case *ast.UnaryExpr:
		switch n.Op {
		case token.SUB:
			return &expr{op: opNeg, args: []*expr{c.compile(n.X)}}
		case token.ADD:
			return c.compile(n.X)
		}
		return c.fail("operator %s is not allowed (use + - * /)", n.Op)
	case *ast.BinaryExpr:
		ops := map[token.Token]op{token.ADD: opAdd, token.SUB: opSub, token.MUL: opMul, token.QUO: opDiv}
		o, ok := ops[n.Op]
		if !ok {
			return c.fail("operator %s is not allowed (use + - * /)", n.Op)
		}
		return &expr{op: o, args: []*expr{c.compile(n.X), c.compile(n.Y)}}
	case *ast.CallExpr:
		return c.call(n)
	}
	return c.fail("%s is not allowed in a formula", types(n))
}

func types(n ast.Expr) string {
	switch n.(type) {
	case *ast.IndexExpr:
		return "indexing"
	case *ast.StarExpr:
		return "pointer"
	case *ast.SelectorExpr:
		return "nested selector"
	case *ast.CompositeLit:
		return "composite literal"
	case *ast.FuncLit:
		return "function literal"
	}
	return fmt.Sprintf("%T", n)
}

// selectorID returns "group.name" for a one-level selector.
func selectorID(n *ast.SelectorExpr) (string, bool) {
	x, ok := n.X.(*ast.Ident)
	if !ok || strings.Contains(x.Name, atSep) || strings.Contains(n.Sel.Name, atSep) {
		return "", false
	}
	return x.Name + "." + n.Sel.Name, true
}

// quantity looks up the quantity of a (possibly workshop-scoped) name and
// reports an unknown one.
func (c *compiler) quantity(id string) (*registry.Quantity, bool) {
	name, ws := splitName(id)
	if strings.Contains(ws, atSep) {
		c.fail("%s: only one @workshop is allowed", pretty(id))
		return nil, false
	}
	q, ok := registry.LookupQuantity(name)
	if !ok {
		c.fail("unknown quantity %q%s", name, suggest(name))
		return nil, false
	}
	return q, true
}

// suggest names the closest known quantity, if any is close.
func suggest(name string) string {
	best, bestD := "", 4
	for _, q := range registry.Quantities() {
		if d := yamlfile.Distance(name, q.Name); d < bestD {
			best, bestD = q.Name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func (c *compiler) call(n *ast.CallExpr) *expr {
	fn, ok := n.Fun.(*ast.Ident)
	if !ok {
		return c.fail("only load, abatement, compliance, mean, coverage, min, max and coalesce may be called")
	}
	if n.Ellipsis.IsValid() {
		return c.fail("%s: '...' is not allowed", fn.Name)
	}
	args := n.Args
	switch fn.Name {
	case "load":
		if len(args) < 1 || len(args) > 2 {
			return c.fail("load takes a concentration and optionally the flow quantity: load(cod) or load(cod, raw_wastewater)")
		}
		q, ws, ok := c.gaugeArg("load", args[0])
		if !ok {
			return c.fail("")
		}
		if q.Medium == "" {
			return c.fail("load(%s): %s has no medium to pair with a flow", q.Name, q.Name)
		}
		s := Series{Kind: SeriesLoad, Quantity: q.Name, Workshop: ws}
		if len(args) == 2 {
			id, ok := args[1].(*ast.Ident)
			if !ok {
				return c.fail("load: the second argument must be a flow quantity such as raw_wastewater")
			}
			fq, ok := c.quantity(id.Name)
			if !ok {
				return c.fail("")
			}
			if _, w := splitName(id.Name); w != "" {
				return c.fail("load: scope the concentration, not the flow (load(cod@%s, %s))", w, fq.Name)
			}
			if !fq.Extensive || fq.Medium != q.Medium {
				return c.fail("load(%s, %s): %s is not a %s volume", q.Name, fq.Name, fq.Name, q.Medium)
			}
			s.Flow = fq.Name
		}
		return &expr{op: opLoad, idx: c.sym.series(s)}
	case "abatement":
		if len(args) != 2 {
			return c.fail("abatement takes the inlet and the outlet concentration: abatement(voc_inlet, voc)")
		}
		in, inWS, ok := c.gaugeArg("abatement", args[0])
		if !ok {
			return c.fail("")
		}
		out, outWS, ok := c.gaugeArg("abatement", args[1])
		if !ok {
			return c.fail("")
		}
		if in.Medium == "" || in.Medium != out.Medium || in.Name == out.Name || inWS != "" || outWS != "" {
			return c.fail("abatement(%s, %s): want two different concentrations in the same medium, without @workshop", in.Name, out.Name)
		}
		inLoad := &expr{op: opLoad, idx: c.sym.series(Series{Kind: SeriesLoad, Quantity: in.Name, With: out.Name})}
		outLoad := &expr{op: opLoad, idx: c.sym.series(Series{Kind: SeriesLoad, Quantity: out.Name, With: in.Name})}
		ratio := &expr{op: opDiv, args: []*expr{outLoad, inLoad}}
		return &expr{op: opMul, args: []*expr{{op: opSub, args: []*expr{{op: opNum, num: 1}, ratio}}, {op: opNum, num: 100}}}
	case "mean":
		if len(args) != 1 {
			return c.fail("mean takes one concentration or level: mean(voc)")
		}
		q, ws, ok := c.gaugeArg("mean", args[0])
		if !ok {
			return c.fail("")
		}
		return &expr{op: opMean, idx: c.sym.series(Series{Kind: SeriesGauge, Quantity: q.Name, Workshop: ws})}
	case "compliance":
		if len(args) != 2 && len(args) != 3 {
			return c.fail("compliance takes a gauge and a limit, compliance(cod, limit.cod_sewer), or a range, compliance(ph, 6, 9)")
		}
		q, ws, ok := c.gaugeArg("compliance", args[0])
		if !ok {
			return c.fail("")
		}
		bounds := make([]float64, 0, 2)
		for _, a := range args[1:] {
			v, ok := c.constValue(a, q.Name)
			if !ok {
				return c.fail("")
			}
			bounds = append(bounds, v)
		}
		e := &expr{op: opCompliance, idx: c.sym.series(Series{Kind: SeriesGauge, Quantity: q.Name, Workshop: ws}), lo: math.Inf(-1)}
		if len(bounds) == 1 {
			e.hi = bounds[0]
			_, e.permit = args[1].(*ast.SelectorExpr)
		} else {
			e.lo, e.hi = bounds[0], bounds[1]
			if !(e.lo <= e.hi) {
				return c.fail("compliance(%s, %v, %v): the lower bound exceeds the upper", q.Name, e.lo, e.hi)
			}
		}
		return e
	case "coverage":
		if len(args) != 1 {
			return c.fail("coverage takes one quantity: coverage(electricity)")
		}
		id, ok := args[0].(*ast.Ident)
		if !ok {
			return c.fail("coverage takes a quantity name")
		}
		q, ok := c.quantity(id.Name)
		if !ok {
			return c.fail("")
		}
		qn, ws := splitName(id.Name)
		s := Series{Kind: SeriesSum, Quantity: qn, Workshop: ws}
		if !q.Extensive {
			s.Kind = SeriesGauge
		}
		return &expr{op: opCoverage, idx: c.sym.series(s)}
	case "min", "max":
		if len(args) < 2 {
			return c.fail("%s takes two or more arguments", fn.Name)
		}
		e := &expr{op: opMin}
		if fn.Name == "max" {
			e.op = opMax
		}
		for _, a := range args {
			e.args = append(e.args, c.compile(a))
		}
		return e
	case "coalesce":
		if len(args) != 2 {
			return c.fail("coalesce takes a value and its default when absent: coalesce(pv_electricity, 0)")
		}
		return &expr{op: opCoalesce, args: []*expr{c.compile(args[0]), c.compile(args[1])}}
	}
	return c.fail("unknown function %q (known: load, abatement, compliance, mean, coverage, min, max, coalesce)", fn.Name)
}

// gaugeArg checks that a is a (possibly workshop-scoped) gauge quantity.
func (c *compiler) gaugeArg(fn string, a ast.Expr) (*registry.Quantity, string, bool) {
	id, ok := a.(*ast.Ident)
	if !ok {
		c.fail("%s takes a quantity name", fn)
		return nil, "", false
	}
	q, ok := c.quantity(id.Name)
	if !ok {
		return nil, "", false
	}
	if q.Extensive {
		c.fail("%s(%s): %s is an amount, not a concentration or level", fn, pretty(id.Name), q.Name)
		return nil, "", false
	}
	_, ws := splitName(id.Name)
	return q, ws, true
}

// constValue evaluates a compliance bound: a number, a negated number, or a
// limit of the same quantity.
func (c *compiler) constValue(a ast.Expr, quantity string) (float64, bool) {
	switch a := a.(type) {
	case *ast.BasicLit:
		e := c.compile(a)
		return e.num, c.err == nil
	case *ast.UnaryExpr:
		if a.Op == token.SUB {
			v, ok := c.constValue(a.X, quantity)
			return -v, ok
		}
	case *ast.SelectorExpr:
		id, ok := selectorID(a)
		if !ok {
			break
		}
		_, v, fixed, err := c.sym.constant(id)
		if err != nil {
			c.fail("%v", err)
			return 0, false
		}
		if !fixed {
			c.fail("compliance: %s depends on the enterprise; a bound must be a number or a limit", id)
			return 0, false
		}
		if lq := c.sym.limitQuantity(id); lq != "" && lq != quantity {
			c.fail("compliance(%s, %s): the limit is for %s", quantity, id, lq)
			return 0, false
		}
		return v, true
	}
	c.fail("compliance: a bound must be a number or a limit such as limit.cod_sewer")
	return 0, false
}
