package web

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-pdf/fpdf"
)

// BuiltinPDF lays the report out itself with fpdf, for hosts without
// Chromium. It draws the same sections as the HTML report (tables and
// trend charts; no CSS), with Chinese and English labels, in a TrueType
// font with CJK glyphs (FontPath: a .ttf, or a .ttc whose first face is
// TrueType, such as Debian's fonts-wqy-microhei). Without one it renders
// nothing: RenderPDF returns ErrNoPDFFont, and the server sends the HTML
// report instead, since a PDF without the enterprises' Chinese names is
// no audit report. Safe for concurrent use.
type BuiltinPDF struct {
	FontPath string // "": no font, every render fails with ErrNoPDFFont

	once sync.Once
	font []byte // FontPath as a single TrueType face
	err  error
}

// ErrNoPDFFont is returned by BuiltinPDF.RenderPDF when it has no font
// with CJK glyphs.
var ErrNoPDFFont = errors.New("web: the built-in PDF writer has no font with CJK glyphs (set report.pdf_font, or install fonts-wqy-microhei or Chromium)")

// Debian's places of fonts with CJK glyphs the built-in writer can use.
var cjkFonts = []string{
	"/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
	"/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
	"/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
}

// NewBuiltinPDF returns the built-in writer using fontPath, or, when it is
// empty, the first CJK font found in the usual Debian places (none: the
// writer answers ErrNoPDFFont).
func NewBuiltinPDF(fontPath string) *BuiltinPDF {
	if fontPath != "" {
		return &BuiltinPDF{FontPath: fontPath}
	}
	for _, p := range cjkFonts {
		if _, err := os.Stat(p); err == nil {
			return &BuiltinPDF{FontPath: p}
		}
	}
	return &BuiltinPDF{}
}

// String says which font the writer uses.
func (b *BuiltinPDF) String() string {
	if b.FontPath == "" {
		return "none (no Chromium, no CJK font: reports are served as HTML)"
	}
	return "built-in PDF writer (" + b.FontPath + ")"
}

// Check reads the font, so that a wrong report.pdf_font is found at
// start rather than at the first report.
func (b *BuiltinPDF) Check() error {
	_, err := b.loadFont()
	return err
}

// loadFont reads the font once.
func (b *BuiltinPDF) loadFont() ([]byte, error) {
	b.once.Do(func() {
		if b.FontPath == "" {
			b.err = ErrNoPDFFont
			return
		}
		data, err := os.ReadFile(b.FontPath)
		if err != nil {
			b.err = fmt.Errorf("pdf font: %w", err)
			return
		}
		b.font, b.err = firstFace(data)
		if b.err != nil {
			b.err = fmt.Errorf("pdf font %s: %w", b.FontPath, b.err)
		}
	})
	return b.font, b.err
}

// firstFace returns a TrueType collection's first face as a TrueType font
// (other fonts unchanged). Table offsets in a collection count from the
// start of the file, so moving the face's table directory to the start is
// enough: the directory is never longer than the headers it overwrites.
func firstFace(data []byte) ([]byte, error) {
	if len(data) < 12 || string(data[:4]) != "ttcf" {
		return data, nil
	}
	n := binary.BigEndian.Uint32(data[8:12])
	if n == 0 || len(data) < 16 {
		return nil, errors.New("empty font collection")
	}
	off := int(binary.BigEndian.Uint32(data[12:16]))
	if off+12 > len(data) {
		return nil, errors.New("font collection: bad offset")
	}
	if v := binary.BigEndian.Uint32(data[off:]); v != 0x00010000 && v != 0x74727565 { // 1.0 or "true"
		return nil, errors.New("the collection's first face is not TrueType (CFF outlines are not supported)")
	}
	size := 12 + 16*int(binary.BigEndian.Uint16(data[off+4:]))
	if off+size > len(data) {
		return nil, errors.New("font collection: truncated directory")
	}
	out := bytes.Clone(data)
	copy(out, data[off:off+size])
	return out, nil
}

// pdfDoc is one report being laid out.
type pdfDoc struct {
	*fpdf.Fpdf
	family string
	rep    *Report
	w, h   float64 // page size
	ml, mr float64 // margins
	bottom float64
}

// RenderPDF lays out r. A panic of the layout library on some text is
// returned as an error: a report request never takes the service down.
func (b *BuiltinPDF) RenderPDF(ctx context.Context, r *Report, _ []byte) (_ []byte, err error) {
	font, err := b.loadFont()
	if err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("built-in pdf: %v", p)
		}
	}()
	pdf := fpdf.New("P", "mm", "A4", "")
	d := &pdfDoc{Fpdf: pdf, rep: r, ml: 12, mr: 12, bottom: 14}
	d.w, d.h = pdf.GetPageSize()
	pdf.SetMargins(d.ml, 14, d.mr)
	pdf.SetAutoPageBreak(false, d.bottom)
	pdf.SetCompression(true)
	pdf.SetCreationDate(r.Generated)
	pdf.SetModificationDate(r.Generated)
	pdf.SetCatalogSort(true)
	pdf.AddUTF8FontFromBytes("body", "", font)
	d.family = "body"
	if err := pdf.Error(); err != nil {
		return nil, fmt.Errorf("built-in pdf: font %s: %w", b.FontPath, err)
	}
	ent := r.Enterprise
	pdf.SetTitle(d.zh("清洁生产审核报告 ")+"Cleaner-production audit report — "+ent.Name, true)
	pdf.SetCreator("cleanprod", true)
	pdf.AliasNbPages("{nb}")
	pdf.SetHeaderFunc(func() {
		if pdf.PageNo() == 1 {
			return
		}
		d.font(7.5, 110)
		pdf.SetXY(d.ml, 6)
		pdf.CellFormat(d.w-d.ml-d.mr, 4, d.s(d.zh("清洁生产审核报告 · ")+d.name(ent.NameZH, ent.Name)+" · "+r.Date(r.To)), "", 0, "L", false, 0, "")
		pdf.SetY(14)
	})
	pdf.SetFooterFunc(func() {
		d.font(7.5, 110)
		pdf.SetXY(d.ml, d.h-9)
		pdf.CellFormat(d.w-d.ml-d.mr, 4, fmt.Sprintf("第 %d 页 / 共 {nb} 页", pdf.PageNo()), "", 0, "C", false, 0, "")
		pdf.SetXY(d.ml, d.h-9)
		pdf.CellFormat(d.w-d.ml-d.mr, 4, ent.ID, "", 0, "R", false, 0, "")
	})
	pdf.AddPage()
	d.title()
	d.codeSection()
	d.profileSection()
	d.coverageSection()
	d.totalsSection()
	d.evaluationSection()
	d.indicatorSection()
	d.nextLevelSection()
	d.laggingSection()
	d.measuresSection()
	d.trendSection()
	d.eventSection()
	d.declarationSection()
	d.provenanceSection()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := pdf.Output(&out); err != nil {
		return nil, fmt.Errorf("built-in pdf: %w", err)
	}
	return out.Bytes(), nil
}

// t returns "zh en".
func (d *pdfDoc) t(zh, en string) string { return zh + " " + en }

// zh returns s; it marks the Chinese half of a label.
func (d *pdfDoc) zh(s string) string { return s }

// name picks the Chinese and English names of something.
func (d *pdfDoc) name(zh, en string) string {
	if zh != "" {
		return zh + " · " + en
	}
	return en
}

// s returns text as printed: the UTF-8 font takes it as it is, but for
// characters beyond the Basic Multilingual Plane (emoji), which fpdf
// cannot embed: those print as "?".
func (d *pdfDoc) s(text string) string {
	return strings.Map(func(r rune) rune {
		if r > 0xFFFF {
			return '?'
		}
		return r
	}, text)
}

func (d *pdfDoc) font(size float64, grey int) {
	d.SetFont(d.family, "", size)
	d.SetTextColor(grey, grey, grey)
}

func (d *pdfDoc) ensure(h float64) {
	if d.GetY()+h > d.h-d.bottom {
		d.AddPage()
	}
}

func (d *pdfDoc) heading(zh, en string) {
	d.ensure(20)
	d.Ln(4)
	d.font(12.5, 20)
	d.CellFormat(0, 7, d.t(zh, en), "", 1, "L", false, 0, "")
	d.SetDrawColor(30, 30, 30)
	d.SetLineWidth(0.5)
	y := d.GetY()
	d.Line(d.ml, y, d.w-d.mr, y)
	d.SetLineWidth(0.2)
	d.Ln(2)
}

func (d *pdfDoc) para(size float64, grey int, text string) {
	d.font(size, grey)
	d.MultiCell(0, size*0.5, d.s(text), "", "L", false)
	d.Ln(1)
}

// table draws rows under a header, wrapping cells and repeating the
// header on new pages. align holds "L" or "R" per column.
func (d *pdfDoc) table(widths []float64, align string, header []string, rows [][]string) {
	const size, lh = 7.5, 3.4
	total := d.w - d.ml - d.mr
	sum := 0.0
	for _, w := range widths {
		sum += w
	}
	ws := make([]float64, len(widths))
	for i, w := range widths {
		ws[i] = w / sum * total
	}
	d.font(size, 20)
	ws = fitWidths(ws, d.minWidths(len(ws), header, rows))
	draw := func(cells []string, fill bool) {
		d.font(size, 20)
		rowWs, rowAlign := ws, align
		if spanRow(cells) {
			// A group heading or a description: across the table.
			cells, rowWs, rowAlign = cells[:1], []float64{total}, "L"
		}
		lines := make([][]string, len(cells))
		n := 1
		for i, c := range cells {
			lines[i] = d.splitLines(d.s(c), rowWs[i])
			n = max(n, len(lines[i]))
		}
		h := float64(n)*lh + 1.6
		if d.GetY()+h > d.h-d.bottom {
			d.AddPage()
			if !fill && header != nil {
				d.tableRow(ws, header, align, true, lh)
			}
		}
		d.tableRowLines(rowWs, lines, rowAlign, fill, lh, h)
	}
	d.ensure(12)
	if header != nil {
		draw(header, true)
	}
	for _, r := range rows {
		draw(r, false)
	}
	d.Ln(2)
}

func (d *pdfDoc) tableRow(ws []float64, cells []string, align string, fill bool, lh float64) {
	lines := make([][]string, len(cells))
	n := 1
	for i, c := range cells {
		lines[i] = d.splitLines(d.s(c), ws[i])
		n = max(n, len(lines[i]))
	}
	d.tableRowLines(ws, lines, align, fill, lh, float64(n)*lh+1.6)
}

func (d *pdfDoc) tableRowLines(ws []float64, lines [][]string, align string, fill bool, lh, h float64) {
	x, y := d.ml, d.GetY()
	d.SetDrawColor(200, 205, 210)
	if fill {
		d.SetFillColor(240, 242, 245)
	}
	for i, w := range ws {
		style := "D"
		if fill {
			style = "FD"
		}
		d.Rect(x, y, w, h, style)
		a := "L"
		if i < len(align) && align[i] == 'R' {
			a = "R"
		}
		for j, l := range lines[i] {
			d.SetXY(x, y+0.8+float64(j)*lh)
			d.CellFormat(w, lh, l, "", 0, a, false, 0, "")
		}
		x += w
	}
	d.SetXY(d.ml, y+h)
}

func (d *pdfDoc) kv(pairs [][2]string) {
	rows := make([][]string, len(pairs))
	for i, p := range pairs {
		rows[i] = []string{p[0], p[1]}
	}
	d.table([]float64{1, 2.6}, "LL", nil, rows)
}

func (d *pdfDoc) title() {
	r, e := d.rep, d.rep.Enterprise
	d.font(18, 10)
	d.CellFormat(0, 9, d.s(d.t("清洁生产审核报告", "Cleaner-production audit report")), "", 1, "L", false, 0, "")
	d.font(12, 10)
	d.MultiCell(0, 6, d.s(d.name(e.NameZH, e.Name)+" ("+e.ID+")"), "", "L", false)
	d.Ln(2)
	assessed := r.DateTime(e.EvaluatedAt)
	if r.AsOf {
		assessed += " (" + d.t("由存储的评价重建", "rebuilt from the stored evaluation") + ")"
	}
	d.kv([][2]string{
		{d.t("报告期", "Period"), r.Date(r.From) + " – " + r.Date(r.To)},
		{d.t("评价时点", "Assessed at"), assessed},
		{d.t("生成时间", "Generated"), r.DateTime(r.Generated)},
		{d.t("评价标准", "Standard"), d.name(r.Standard.NameZH, r.Standard.NameEN) + " (" + r.Standard.ID + ")"},
	})
	d.provisionalBanner()
}

// provisionalBanner says, while the standard has estimated benchmarks,
// that the levels are provisional (as the HTML report's banner).
func (d *pdfDoc) provisionalBanner() {
	p := d.rep.Provisional
	if len(p.Estimated) == 0 {
		return
	}
	text := d.t(fmt.Sprintf("暂定评价：本标准 %d 项指标中 %d 项的基准值为工程估计（src: estimate），尚未以官方指标体系核实；据此得出的等级仅供参考，不得作为正式审核结论报送。", p.Indicators, len(p.Estimated)),
		fmt.Sprintf("Provisional grading: %d of the %d indicators of the standard in force have estimated benchmarks (src: estimate), not yet checked against the official tables: levels graded against them are provisional and must not be submitted as an official audit result.", len(p.Estimated), p.Indicators))
	d.ensure(16)
	d.font(8.5, 20)
	d.SetFillColor(255, 248, 197)
	d.SetDrawColor(191, 135, 0)
	d.SetLineWidth(0.4)
	d.MultiCell(0, 4.2, d.s(text), "1", "L", true)
	d.SetLineWidth(0.2)
	d.Ln(2)
}

func lv(l *string) string { return levelText(l) }

func (d *pdfDoc) codeSection() {
	r, e := d.rep, d.rep.Enterprise
	d.heading("动态码与审核周期", "Dynamic code and audit cycle")
	code := deref(e.Code)
	d.SetFillColor(140, 149, 159)
	switch code {
	case "green":
		d.SetFillColor(26, 127, 55)
	case "yellow":
		d.SetFillColor(191, 135, 0)
	case "red":
		d.SetFillColor(207, 34, 46)
	}
	d.font(14, 255)
	label := code
	if label == "" {
		label = "no code yet"
	}
	label = codeZH(code) + " " + label
	d.CellFormat(d.GetStringWidth(label)+8, 8, label, "", 1, "C", true, 0, "")
	d.Ln(2)
	pairs := [][2]string{
		{d.t("赋码时间", "Code since"), r.Date(e.CodeSince)},
		{d.t("等级", "Level") + " (" + r.Window + ")", lv(r.Live.Level) + "  " + d.t("得分", "score") + fmt.Sprintf(" %.1f", r.Live.Score) +
			"  " + d.t("完整度", "completeness") + " " + pctText(r.Live.Completeness) + d.notes(e.LevelNote, e.ScoreNote)},
	}
	if p := e.PendingChange; p != nil {
		pairs = append(pairs, [2]string{d.t("待变更", "Pending"),
			codeZH(p.Code) + " " + p.Code + ": " + d.t(p.Note.ZH, p.Note.EN) + ". " + d.reasons(p.Reasons)})
	}
	if o := r.Official; o != nil {
		var notes string
		if e.Official != nil {
			notes = d.notes(e.Official.LevelNote, e.Official.ScoreNote)
		}
		pairs = append(pairs, [2]string{d.t("等级", "Level") + " (" + o.Window + ")", lv(o.Level) + "  " + d.t("得分", "score") + fmt.Sprintf(" %.1f", o.Score) +
			"  " + d.t("完整度", "completeness") + " " + pctText(o.Completeness) + notes})
	}
	cycle := "—"
	if e.AuditIntervalMonths > 0 {
		cycle = fmt.Sprintf("%d %s", e.AuditIntervalMonths, d.t("个月", "months"))
	}
	pairs = append(pairs,
		[2]string{d.t("审核周期", "Audit cycle"), cycle},
		[2]string{d.t("上次审核", "Last audit"), r.Date(e.LastAudit)},
		[2]string{d.t("下次审核到期", "Next audit due"), r.Date(e.NextAuditDue)},
	)
	if n := e.AuditNote; n != nil {
		pairs = append(pairs, [2]string{d.t("审核逾期", "Audit overdue"), d.t(n.ZH, n.EN)})
	}
	pairs = append(pairs, [2]string{d.t("赋码依据", "Why this code"), d.reasons(e.CodeReasons)})
	d.kv(pairs)
	var rows [][]string
	for _, c := range r.Codes {
		rows = append(rows, []string{d.t(codeZH(c.Code), c.Code), fmt.Sprintf("%d %s", c.AuditIntervalMonths, d.t("个月", "months"))})
	}
	d.table([]float64{1, 1}, "LR", []string{d.t("动态码", "Code"), d.t("审核周期", "Audit interval")}, rows)
}

// notes are the explanations of a level and its score that apply, each after
// a semicolon.
func (d *pdfDoc) notes(ts ...*Text) string {
	var b strings.Builder
	for _, t := range ts {
		if t != nil {
			b.WriteString("; " + d.t(t.ZH, t.EN))
		}
	}
	return b.String()
}

// reasons joins the texts of rs.
func (d *pdfDoc) reasons(rs []ReasonDTO) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		parts = append(parts, d.t(r.ReasonText.ZH, r.ReasonText.EN))
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, "; ")
}

func (d *pdfDoc) profileSection() {
	r, e := d.rep, d.rep.Enterprise
	d.heading("企业概况", "Enterprise profile")
	d.kv([][2]string{
		{d.t("企业", "Enterprise"), d.name(e.NameZH, e.Name)},
		{d.t("行业", "Industry"), strings.TrimSpace(r.IndustryZH(e.Industry) + " " + e.Industry)},
		{d.t("地区", "Region"), strings.TrimSpace(r.RegionZH(e.Region) + " " + e.Region)},
		{d.t("统一社会信用代码", "Unified social credit code"), orDash(e.USCC)},
		{d.t("排污许可证编号", "Discharge permit number"), orDash(e.DischargePermit)},
		{d.t("网关 / 仪表", "Gateways / meters"), fmt.Sprintf("%d / %d", len(r.Profile.Gateways), r.Profile.Meters)},
		{d.t("车间", "Workshops"), strings.Join(r.Profile.Workshops, ", ")},
	})
	var rows [][]string
	for _, q := range r.Profile.Quantities {
		rows = append(rows, []string{strings.TrimSpace(r.QuantityZH(q.Quantity)+" "+r.QuantityEN(q.Quantity)) + " (" + q.Quantity + ")", reportUnit(q.Unit), fmt.Sprint(q.Meters)})
	}
	d.table([]float64{2, 1, 1}, "LLR", []string{d.t("计量量", "Quantity"), d.t("标准单位", "Canonical unit"), d.t("仪表", "Meters")}, rows)
}

func (d *pdfDoc) coverageSection() {
	r := d.rep
	d.heading("数据覆盖", "Data coverage")
	var rows [][]string
	for _, w := range r.Coverage.Windows {
		c := pctText(w.Completeness)
		if w.BelowMinCompleteness {
			c += " < " + pctText(w.MinCompleteness)
		}
		rows = append(rows, []string{w.Window, r.Date(w.From) + " – " + r.Date(w.To), c, fmt.Sprintf("%d / %d", w.Graded, w.Metered), r.indicatorsZH(w.Insufficient)})
	}
	d.table([]float64{1, 2, 1.2, 1.2, 4}, "LLRRL", []string{d.t("窗口", "Window"), d.t("起止", "From – to"), d.t("完整度", "Completeness"), d.t("已评价/计量", "Graded / metered"), d.t("数据不足", "Insufficient")}, rows)
	var groups []string
	for _, g := range r.Coverage.StaleByGateway {
		groups = append(groups, strings.TrimSpace(fmt.Sprintf("%s %d %s (%s)", g.Gateway, len(g.Meters), d.t("块", "meters"), g.List)))
	}
	stale := strings.Join(groups, "; ")
	if stale == "" {
		stale = d.t("无", "none")
	}
	d.para(8, 40, fmt.Sprintf("%s: %d; %s: %d; %s: %s. %s: %d.", d.t("已登记仪表", "Meters registered"), r.Coverage.Meters,
		d.t("期内有读数", "reporting in the period"), r.Coverage.MetersReporting, d.t("离线", "stale"), stale,
		d.t("期内存储的评价", "Stored evaluations in the period"), r.Coverage.Evaluations))
}

func pctText(v float64) string { return formatNum(100*v) + "%" }

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func (d *pdfDoc) totalsSection() {
	r := d.rep
	d.heading("期内总量", "Totals over the windows")
	if len(r.Totals) == 0 {
		d.para(8.5, 30, d.t("无计量总量。", "No metered totals."))
		return
	}
	header := []string{d.t("总量", "Total"), d.t("单位", "Unit")}
	widths := []float64{4, 1.4}
	align := "LL"
	for _, a := range r.Enterprise.Assessments {
		header = append(header, a.Window+" "+r.Date(a.From)+" – "+r.Date(a.To))
		widths = append(widths, 2.2)
		align += "R"
	}
	var rows [][]string
	for _, t := range r.Totals {
		cells := []string{d.name(t.NameZH, t.NameEN), reportUnit(t.Unit)}
		for i, v := range t.Values {
			c := qtyText(v)
			if t.Partial(i) {
				c += " (" + pctText(*t.Coverage[i]) + ")"
			}
			cells = append(cells, c)
		}
		rows = append(rows, cells)
	}
	d.table(widths, align, header, rows)
	d.para(7, 80, d.t("由窗口内各仪表读数累计；综合能耗按本标准的折标系数折算；括号内为数据覆盖不足时的覆盖率，此时总量偏低。",
		"Summed from the meters' readings in each window; energy in kgce with the standard's standard-coal factors; a percentage in brackets is the coverage of a window with gaps, whose total is then understated."))
}

func (d *pdfDoc) evaluationSection() {
	r := d.rep
	d.heading("综合评价", "Comprehensive evaluation")
	var rows [][]string
	for _, a := range r.Enterprise.Assessments {
		restr := lv(a.RestrictiveLevel)
		if a.RestrictiveMissing {
			restr = d.t("数据不足", "missing")
		}
		note := a.Capped
		if len(a.Exceedance) > 0 {
			note += " exceedance: " + strings.Join(a.Exceedance, ", ")
		}
		rows = append(rows, []string{a.Window, fmt.Sprintf("%.1f", a.YI), fmt.Sprintf("%.1f", a.YII), fmt.Sprintf("%.1f", a.YIII), lv(a.Level), fmt.Sprintf("%.1f", a.Score), restr, note})
	}
	d.table([]float64{1, 0.8, 0.8, 0.8, 1, 0.8, 1.2, 3.5}, "LRRRLRLL", []string{d.t("窗口", "Window"), "Y_I", "Y_II", "Y_III", d.t("等级", "Level"), d.t("得分", "Score"), d.t("限定性", "Restrictive"), d.t("说明", "Note")}, rows)
	d.para(7.5, 80, methodText)
}

func (d *pdfDoc) indicatorSection() {
	r := d.rep
	d.heading("指标评价表", "Indicators against Level I / II / III")
	header := []string{d.t("指标", "Indicator"), d.t("单位", "Unit"), "I", "II", "III", r.Window, d.t("等级", "Level")}
	widths := []float64{4, 1.5, 1, 1, 1, 1.3, 1.1}
	align := "LLRRRRL"
	if r.Official != nil {
		header = append(header, r.Other, d.t("等级", "Level"))
		widths = append(widths, 1.3, 1.1)
		align += "RL"
	}
	header = append(header, d.t("权重", "Weight"), d.t("来源", "Source"))
	widths = append(widths, 1.1, 2.8)
	align += "RL"
	var rows [][]string
	for _, g := range r.Groups {
		rows = append(rows, []string{fmt.Sprintf("[%s]  %s", formatNum(g.Weight), d.name(g.NameZH, g.NameEN))})
		for _, row := range g.Rows {
			ind := row.Live
			name := d.name(ind.NameZH, ind.NameEN)
			if ind.Restrictive {
				name += " *"
			}
			cells := []string{name, reportUnit(ind.Unit)}
			if ind.Benchmarks != nil {
				cells = append(cells, numText(ind.Benchmarks.I), numText(ind.Benchmarks.II), numText(ind.Benchmarks.III))
			} else {
				cells = append(cells, d.t("定性", "qual."), "", "")
			}
			cells = append(cells, numText(ind.Value), d.levelOrStatus(ind))
			if row.Official != nil {
				cells = append(cells, numText(row.Official.Value), d.levelOrStatus(*row.Official))
			}
			src := d.t("计量", "metered")
			if ind.Source == "declared" {
				src = d.t("申报", "declared")
			}
			if ind.Evidence != "" {
				src += ": " + ind.Evidence
			}
			if len(ind.Short) > 0 {
				src += "; " + d.t("数据不足的仪表", "meters short of data") + ": " + strings.Join(ind.Short, ", ")
			}
			src += " [" + strings.Join(ind.Src, ", ") + "]"
			cells = append(cells, pctText(ind.Weight), src)
			rows = append(rows, cells)
			if ind.Descriptions != nil {
				rows = append(rows, []string{fmt.Sprintf("   I: %v · II: %v · III: %v", ind.Descriptions.I, ind.Descriptions.II, ind.Descriptions.III)})
			}
		}
	}
	// Group and description rows span the table: pad them.
	for i, row := range rows {
		if len(row) == 1 {
			rows[i] = d.spanRow(row[0], len(header))
		}
	}
	d.table(widths, align, header, rows)
	d.para(7, 80, d.t("* 限定性指标。权重为重新归一化后的有效权重。", "* restrictive indicator. Weights are effective shares of the index after renormalisation."))
}

// spanRow puts text in the first cell of an otherwise empty row.
func (d *pdfDoc) spanRow(text string, n int) []string {
	row := make([]string, n)
	row[0] = text
	return row
}

func (d *pdfDoc) levelOrStatus(ind IndicatorDTO) string {
	if ind.Level != nil {
		return *ind.Level
	}
	return statusZH(ind.Status)
}

func (d *pdfDoc) nextLevelSection() {
	n := d.rep.Enterprise.NextLevel
	if n == nil || n.Target == nil {
		d.heading("晋级", "Next level")
		if n == nil {
			d.para(8.5, 30, d.t("未评价。", "Not evaluated."))
		} else {
			d.para(8.5, 30, d.t("已达一级，即最高等级。", "Level I is the top level."))
		}
		return
	}
	tgt := *n.Target
	d.heading("晋级"+levelZH(n.Target)+"所需改进", "To reach Level "+tgt)
	d.para(8.5, 30, d.t(fmt.Sprintf("%s 窗口：Y_%s 当前为 %.1f，完成下列 %d 项改进后为 %.1f。", n.Window, tgt, n.Y, len(n.Steps), n.YAfter),
		fmt.Sprintf("On the %s window Y_%s is %.1f now and %.1f after the %d improvements below.", n.Window, tgt, n.Y, n.YAfter, len(n.Steps))))
	if !n.Reachable {
		d.para(8.5, 30, d.t("按现有数据尚不能晋级", "Not reachable on the data so far")+": "+n.Reason)
	}
	var rows [][]string
	for i, s := range n.Steps {
		name := d.name(s.NameZH, s.NameEN)
		if s.Restrictive {
			name += " *"
		}
		if s.Mandatory {
			name += " (" + d.t("必须", "required") + ")"
		}
		if s.Reason != "" {
			name += " — " + s.Reason
		}
		cur := "—"
		if s.Value != nil {
			cur = numText(s.Value) + " " + reportUnit(s.Unit)
		}
		level := lv(s.Level)
		if s.Level == nil {
			level = d.levelOrStatus(IndicatorDTO{Status: s.Status})
		}
		rows = append(rows, []string{fmt.Sprint(i + 1), name, cur, level, lv(s.Target), reportUnit(neededText(s)), "+" + formatNum(s.Gain)})
	}
	if len(rows) > 0 {
		d.table([]float64{0.5, 4.5, 1.6, 1, 0.9, 2.6, 1}, "RLRLLRR", []string{"#", d.t("指标", "Indicator"), d.t("当前", "Current"),
			d.t("等级", "Level"), d.t("目标", "Target"), d.t("需达到", "Needed"), "Y_" + tgt + " " + d.t("增益", "gain")}, rows)
	}
	d.para(7, 80, d.t("必须项：限定性指标（三级则为全部低于三级的指标）；其余为使 Y 达到 85 所需的最少指标，按增益从大到小。",
		"Required: restrictive indicators (for Level III, every indicator below III); the others are the fewest that lift Y to 85, largest gain first. Needed is the target level's benchmark (≤ at most, ≥ at least); gain is the index points a step adds after the ones above it."))
}

func (d *pdfDoc) laggingSection() {
	e := d.rep.Enterprise
	d.heading("落后指标", "Lagging indicators")
	if len(e.Lagging) == 0 {
		d.para(8.5, 30, d.t("无落后指标。", "No indicator holds the enterprise below its next level."))
		return
	}
	var rows [][]string
	for _, l := range e.Lagging {
		rows = append(rows, []string{d.name(l.NameZH, l.NameEN), lv(l.Level), lv(l.Target), numText(l.Value) + " " + reportUnit(l.Unit), numText(l.Needed) + " " + reportUnit(l.Unit), fmt.Sprintf("%.1f", l.Gap)})
	}
	d.table([]float64{4, 1, 1, 1.5, 1.5, 1.2}, "LLLRRR", []string{d.t("指标", "Indicator"), d.t("等级", "Level"), d.t("目标", "Target"), d.t("当前值", "Value"), d.t("需达到", "Needed"), d.t("加权差距", "Weighted gap")}, rows)
}

func (d *pdfDoc) measuresSection() {
	r := d.rep
	d.heading("清洁生产方案", "Action plan: recommended measures")
	if len(r.Plan) == 0 {
		d.para(8.5, 30, d.t("解决方案库中没有对应措施。", "The solution library has no measure for the lagging indicators."))
		return
	}
	d.para(7, 80, d.t("按审核惯例分为无/低费方案（可立即实施）与中/高费方案（须做可行性分析）；每项措施列出一次，并列出其改善的全部指标（均为晋级所需改进，标“仅落后”者除外）：当前值 → 预计值（指标单位）及预计等级。指数增益为各指标上增加的指数点之和。",
		"Grouped as the audit practice does: no- and low-cost measures (done at once) and medium- and high-cost measures (a project with a feasibility study). Each measure is listed once with every indicator it improves (each a step to the next level unless marked lagging only): current → projected value in the indicator's unit, and the projected level. Index gain is the sum of the index points gained on those indicators."))
	for _, tier := range r.Plan {
		d.ensure(24)
		d.font(10, 20)
		d.CellFormat(0, 6, d.t(tier.NameZH, tier.NameEN), "", 1, "L", false, 0, "")
		var rows [][]string
		for _, m := range tier.Measures {
			payback := "—"
			if m.PaybackYears[1] > 0 {
				payback = fmt.Sprintf("%s–%s %s", formatNum(m.PaybackYears[0]), formatNum(m.PaybackYears[1]), d.t("年", "years"))
			}
			what := d.name(m.NameZH, m.NameEN)
			if m.Description != "" {
				what += ". " + m.Description
			}
			if len(m.Src) > 0 {
				what += " [" + strings.Join(m.Src, ", ") + "]"
			}
			var effects []string
			for _, ef := range m.Effects {
				e := "• " + d.name(ef.NameZH, ef.NameEN)
				if !ef.Step {
					e += " (" + d.t("仅落后", "lagging only") + ")"
				}
				e += ": "
				if ef.Projected != nil {
					e += numText(ef.Value) + " → " + numText(ef.Projected) + " " + reportUnit(ef.Unit) + ", "
				}
				e += lv(ef.ProjectedLevel)
				if ef.ReachesTarget {
					e += " ✓"
				}
				e += fmt.Sprintf(" (+%.1f)", ef.Benefit)
				if sv := r.SavingText(ef); sv != "" {
					e += "; " + r.Window + " " + d.t("窗口节约", "saves") + " " + sv
				}
				effects = append(effects, e)
			}
			rows = append(rows, []string{what, d.t(costZH(m.Cost), m.Cost) + "\n" + payback, strings.Join(effects, "\n"), fmt.Sprintf("+%.1f", m.Benefit)})
		}
		d.table([]float64{3.2, 1.3, 5, 0.9}, "LLLR", []string{d.t("措施", "Measure"), d.t("费用 · 回收期", "Cost · payback"),
			d.t("改善的指标：当前 → 预计", "Indicators improved: current → projected"), d.t("指数增益", "Index gain")}, rows)
	}
	d.para(7, 80, d.t("✓ 表示预计可达到目标等级。节约量＝（当前值 − 预计值）× "+r.Window+" 窗口内分母的总量（如产量、涂装面积），按期内数据计，不作年化。",
		"✓ marks an indicator expected to reach its target level. A saving is (current − projected value) × the "+r.Window+" window's total of the indicator's denominator (vehicles, coated area): over that window, not a year."))
}

func (d *pdfDoc) trendSection() {
	r := d.rep
	d.heading("关键指标趋势", "Trends of key indicators")
	if len(r.Trends) == 0 {
		d.para(8.5, 30, d.t("期内无存储的指标值。", "No indicator values stored in the period."))
		return
	}
	const gap = 6.0
	cw := (d.w - d.ml - d.mr - gap) / 2
	ch := 54.0
	for i, tr := range r.Trends {
		if i%2 == 0 {
			d.ensure(ch + 10)
		}
		x := d.ml + float64(i%2)*(cw+gap)
		y := d.GetY()
		d.font(8, 20)
		lines := d.splitLines(d.s(d.name(tr.Indicator.NameZH, tr.Indicator.NameEN)), cw)
		for j, l := range lines[:min(2, len(lines))] {
			d.SetXY(x, y+float64(j)*3.6)
			d.CellFormat(cw, 3.6, l, "", 0, "L", false, 0, "")
		}
		d.chart(tr, x, y+8, cw, ch-9)
		if i%2 == 1 || i == len(r.Trends)-1 {
			d.SetXY(d.ml, y+ch+3)
		} else {
			d.SetXY(d.ml, y)
		}
	}
}

// chart draws a trend like trendSVG: benchmarks dashed, values as a line.
func (d *pdfDoc) chart(tr Trend, x, y, w, h float64) {
	const padL, padR, padB = 14.0, 12.0, 8.0
	d.SetDrawColor(208, 215, 222)
	d.Rect(x+padL, y, w-padL-padR, h-padB, "D")
	series := tr.series
	ind := tr.def
	if len(series) < 2 || ind == nil {
		d.font(7, 100)
		d.SetXY(x, y+h/2-2)
		d.CellFormat(w, 4, d.t("期内存储的数值不足", "fewer than two stored values in the period"), "", 0, "C", false, 0, "")
		return
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range series {
		lo, hi = math.Min(lo, p.v), math.Max(hi, p.v)
	}
	for _, b := range ind.Benchmarks {
		lo, hi = math.Min(lo, b), math.Max(hi, b)
	}
	if hi-lo < 1e-9*math.Max(1, math.Abs(hi)) {
		lo, hi = lo-1, hi+1
	}
	pad := (hi - lo) * 0.06
	lo, hi = lo-pad, hi+pad
	span := d.rep.To.Sub(d.rep.From).Seconds()
	px := func(t time.Time) float64 {
		return x + padL + math.Max(0, math.Min(1, t.Sub(d.rep.From).Seconds()/span))*(w-padL-padR)
	}
	py := func(v float64) float64 { return y + (hi-v)/(hi-lo)*(h-padB) }
	cols := [3][3]int{{26, 127, 55}, {154, 103, 0}, {207, 34, 46}}
	d.SetLineWidth(0.25)
	d.font(6.5, 90)
	labelY := benchLabelYs(ind.Benchmarks, py, 2.6)
	for i, b := range ind.Benchmarks {
		d.SetDrawColor(cols[i][0], cols[i][1], cols[i][2])
		d.SetDashPattern([]float64{1.2, 1}, 0)
		d.Line(x+padL, py(b), x+w-padR, py(b))
		d.SetDashPattern(nil, 0)
		d.SetTextColor(cols[i][0], cols[i][1], cols[i][2])
		d.Text(x+w-padR+1, labelY[i]+1, []string{"I", "II", "III"}[i]+" "+formatNum(b))
	}
	d.SetTextColor(90, 90, 90)
	for _, tk := range dayTicks(d.rep.From, d.rep.To, d.rep.loc) {
		tx := px(tk)
		d.SetDrawColor(225, 228, 232)
		d.Line(tx, y, tx, y+h-padB+0.8)
		label := tk.In(d.rep.loc).Format("01-02")
		d.Text(tx-d.GetStringWidth(label)/2, y+h-padB+3.2, label)
	}
	d.Text(x, py(hi-pad)+1, formatNum(hi-pad))
	d.Text(x, py(lo+pad)+1, formatNum(lo+pad))
	d.Text(x, y+(h-padB)/2+1, reportUnit(ind.Unit))
	d.Text(x+padL, y+h-0.5, d.rep.Date(d.rep.From))
	end := d.rep.DateTime(d.rep.To)
	d.Text(x+w-padR-d.GetStringWidth(end), y+h-0.5, end)
	d.SetDrawColor(9, 105, 218)
	d.SetLineWidth(0.45)
	for i := 1; i < len(series); i++ {
		d.Line(px(series[i-1].t), py(series[i-1].v), px(series[i].t), py(series[i].v))
	}
	d.SetLineWidth(0.2)
}

func (d *pdfDoc) eventSection() {
	r := d.rep
	d.heading("期内事件", "Events in the period")
	if len(r.EventRows) == 0 {
		d.para(8.5, 30, d.t("期内无事件。", "No events in the period."))
		return
	}
	var rows [][]string
	for _, ev := range r.EventRows {
		when := r.DateTime(ev.Time)
		kind := kindZH(string(ev.Kind))
		if ev.Summary() {
			when += " – " + r.Until(ev)
			kind += fmt.Sprintf(" ×%d", ev.Count)
		}
		kind += " " + string(ev.Kind)
		if ev.Resolved {
			kind += " (" + d.t("已解除", "resolved") + ")"
		}
		rows = append(rows, []string{when, kind, ev.Subject, d.t(ev.ZH, ev.EN)})
	}
	d.table([]float64{1.7, 1.6, 1.6, 5}, "LLLL", []string{d.t("时间", "Time"), d.t("类型", "Kind"), d.t("对象", "Subject"), d.t("说明", "Reason")}, rows)
	note := d.t("仪表离线按网关和日汇总，小时均值超标按仪表和日汇总。", "Stale meters are summarised per gateway and day, hourly exceedances per analyser and day.")
	if r.EventsOmitted > 0 {
		note += " " + d.t(fmt.Sprintf("另有 %d 行较早的事件未列出。", r.EventsOmitted), fmt.Sprintf("%d older rows are not listed.", r.EventsOmitted))
	}
	d.para(7, 80, note)
}

func (d *pdfDoc) declarationSection() {
	r := d.rep
	d.heading("申报与审核", "Declarations and their review")
	if len(r.Declarations) == 0 {
		d.para(8.5, 30, d.t("无申报。", "No declarations."))
		return
	}
	var rows [][]string
	for _, dc := range r.Declarations {
		what := ""
		name := d.name(dc.NameZH, dc.NameEN)
		switch {
		case dc.Absent != "":
			name, what = "absent: "+dc.Absent, d.t("计为 0", "counts as 0")
		case dc.NotApplicable:
			what = d.t("不适用", "not applicable")
		case dc.Level != nil:
			what = "Level " + *dc.Level
		case dc.Value != nil:
			what = formatNum(*dc.Value)
		}
		evidence := dc.Evidence
		if dc.Auditor != "" {
			evidence += "; auditor " + dc.Auditor + ", report " + dc.ReportRef
		}
		state := stateZH(dc.State) + " " + dc.State
		if dc.InForce {
			state += " (in force)"
		}
		reviewed := d.t("待审", "waiting")
		if dc.ReviewedBy != nil {
			reviewed = *dc.ReviewedBy + " " + r.DateTime(dc.ReviewedAt)
			if dc.ReviewNote != "" {
				reviewed += ": " + dc.ReviewNote
			}
		}
		rows = append(rows, []string{name, what, evidence, state, dc.SubmittedBy + " " + r.DateTime(dc.SubmittedAt), reviewed})
	}
	d.table([]float64{2, 1.2, 2.6, 1.4, 1.8, 2.4}, "LLLLLL", []string{d.t("指标", "Indicator"), d.t("申报", "Declared"), d.t("依据", "Evidence"),
		d.t("状态", "State"), d.t("提交", "Submitted"), d.t("审核", "Reviewed")}, rows)
}

func (d *pdfDoc) provenanceSection() {
	r := d.rep
	d.heading("标准来源", "Provenance of the standard")
	d.para(8, 30, fmt.Sprintf("%s (%s, %s). Sources: %s; code policy %s [%s].", d.name(r.Standard.NameZH, r.Standard.NameEN), r.Standard.ID, r.Standard.File,
		strings.Join(r.Standard.Src, ", "), r.Standard.PolicyID, strings.Join(r.Standard.PolicySrc, ", ")))
	d.para(7.5, 80, d.t("每个数值都标注来源：来源标签、estimate（工程估计）或 unverified（未核实）。", "Every number carries its source: a tag below, estimate (an engineering estimate) or unverified."))
	var rows [][]string
	for _, s := range r.Standard.Sources {
		rows = append(rows, []string{s.Tag, reportUnit(s.Citation)})
	}
	d.table([]float64{1, 9}, "LL", []string{d.t("标签", "Tag"), d.t("出处", "Citation")}, rows)
}

// minWidths are the widths each column needs so that no word of its cells
// is split: the widest run of Latin letters, digits and signs (Chinese may
// break between any two characters), plus the cell's margins. A cell
// spanning the row (a row with one non-empty first cell, such as a group
// heading) does not count. Each minimum is at most 40 % of the page.
func (d *pdfDoc) minWidths(n int, header []string, rows [][]string) []float64 {
	mins := make([]float64, n)
	limit := 0.4 * (d.w - d.ml - d.mr)
	margin := 2*d.GetCellMargin() + 0.3
	measure := func(cells []string) {
		if spanRow(cells) {
			return
		}
		for i, c := range cells {
			if i >= n {
				break
			}
			for _, w := range latinWords(c) {
				mins[i] = max(mins[i], min(limit, d.GetStringWidth(w)+margin))
			}
		}
	}
	measure(header)
	for _, r := range rows {
		measure(r)
	}
	return mins
}

// latinWords are the runs of s that a line must not break: characters
// other than spaces and CJK (which breaks anywhere).
func latinWords(s string) []string {
	var out []string
	start := -1
	for i, r := range s {
		breakable := r == ' ' || r == '\n' || r == '\t' || r >= 0x2E80
		switch {
		case breakable && start >= 0:
			out = append(out, s[start:i])
			start = -1
		case !breakable && start < 0:
			start = i
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// fitWidths widens the columns narrower than their minimum, taking the
// room from the others in proportion to what they have beyond theirs; the
// total stays the same. When the minimums add up to more than the total,
// every column gets its minimum scaled down alike.
func fitWidths(ws, mins []float64) []float64 {
	out := slices.Clone(ws)
	total, need, slack, sumMin := 0.0, 0.0, 0.0, 0.0
	for i, w := range ws {
		total += w
		sumMin += mins[i]
		if mins[i] > w {
			need += mins[i] - w
		} else {
			slack += w - mins[i]
		}
	}
	if need == 0 {
		return out
	}
	if sumMin >= total { // then slack <= need: no room to take
		for i := range out {
			out[i] = mins[i] / sumMin * total
		}
		return out
	}
	for i, w := range ws {
		if mins[i] > w {
			out[i] = mins[i]
		} else {
			out[i] = w - (w-mins[i])*need/slack
		}
	}
	return out
}

// splitLines breaks text into lines of width w (cell margins included):
// at "\n", at spaces (dropped), and between Chinese characters (none
// dropped; never before closing punctuation such as ， or ）); a word
// longer than a line is cut. fpdf's SplitText is not used: it drops the
// Chinese character it breaks at.
func (d *pdfDoc) splitLines(text string, w float64) []string {
	maxw := w - 2*d.GetCellMargin()
	var out []string
	for _, para := range strings.Split(text, "\n") {
		rs := []rune(para)
		if len(rs) == 0 {
			out = append(out, "")
			continue
		}
		for start := 0; start < len(rs); {
			width, brk, skip, i := 0.0, -1, 0, start
			for ; i < len(rs); i++ {
				r := rs[i]
				switch {
				case i == start:
				case r == ' ':
					brk, skip = i, 1
				case (isCJK(r) || isCJK(rs[i-1])) && !strings.ContainsRune(noBreakBefore, r):
					brk, skip = i, 0
				}
				width += d.GetStringWidth(string(r))
				if width > maxw && i > start {
					break
				}
			}
			if i == len(rs) {
				out = append(out, strings.TrimRight(string(rs[start:]), " "))
				break
			}
			end, next := i, i
			if brk > start {
				end, next = brk, brk+skip
			}
			out = append(out, strings.TrimRight(string(rs[start:end]), " "))
			for start = next; start < len(rs) && rs[start] == ' '; start++ {
			}
		}
	}
	return out
}

// noBreakBefore are the characters a line must not start with.
const noBreakBefore = "，。、；：？！）》」』】〕％·,.;:?!)%"

// isCJK reports whether r is a Chinese (or other CJK) character or
// full-width sign, between which lines may break.
func isCJK(r rune) bool {
	return (r >= 0x2E80 && r <= 0x9FFF) || (r >= 0xF900 && r <= 0xFAFF) || (r >= 0xFF00 && r <= 0xFFEF)
}

// spanRow reports whether a row of several cells has text in its first
// cell only: a row drawn across the table.
func spanRow(cells []string) bool {
	return len(cells) > 1 && cells[0] != "" && strings.Join(cells[1:], "") == ""
}
