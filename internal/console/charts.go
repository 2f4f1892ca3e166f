package console

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// Chart is an SVG picture, drawn on the server, ready to put in a page.
type Chart struct {
	SVG template.HTML
	// Empty says there was nothing to draw.
	Empty bool
}

// Bar is one horizontal bar: a label, a value and the text shown beside it.
type Bar struct {
	Label string
	Value float64
	Note  string
	// Class is an extra CSS class of the bar (e.g. a severity's colour).
	Class string
}

// Column is one bucket of a stacked column chart: Part (failures) is drawn
// at the bottom of Total, in another colour.
type Column struct {
	Label       string
	Total, Part int64
}

const (
	barHeight  = 22
	barGap     = 6
	labelWidth = 190
	barArea    = 360
	noteWidth  = 200
)

// esc escapes text for SVG (XML) content and attributes.
func esc(s string) string { return template.HTMLEscapeString(s) }

// BarChart draws horizontal bars, one per Bar, scaled so that max (or the
// largest value when max is 0) spans the bar area. Each bar carries its
// value in data-value so that a test can check the drawing against the
// numbers.
func BarChart(bars []Bar, max float64) Chart {
	if len(bars) == 0 {
		return Chart{Empty: true}
	}
	if max <= 0 {
		for _, b := range bars {
			max = math.Max(max, b.Value)
		}
	}
	if max <= 0 {
		max = 1
	}
	h := len(bars)*(barHeight+barGap) + barGap
	w := labelWidth + barArea + noteWidth
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart bars" role="img" viewBox="0 0 %d %d" width="100%%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">`, w, h)
	for i, bar := range bars {
		y := barGap + i*(barHeight+barGap)
		width := bar.Value / max * barArea
		fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">%s</text>`, labelWidth-8, y+barHeight-6, esc(truncate(bar.Label, 28)))
		fmt.Fprintf(&b, `<rect class="bar %s" x="%d" y="%d" width="%.2f" height="%d" data-value="%g"><title>%s: %s</title></rect>`,
			esc(bar.Class), labelWidth, y, width, barHeight, bar.Value, esc(bar.Label), esc(bar.Note))
		fmt.Fprintf(&b, `<text class="note" x="%.2f" y="%d">%s</text>`, float64(labelWidth)+width+6, y+barHeight-6, esc(bar.Note))
	}
	b.WriteString(`</svg>`)
	return Chart{SVG: template.HTML(b.String())}
}

// StackedColumns draws one column per bucket, its height in proportion to
// Total, with Part stacked at its foot. Empty buckets are present (height
// 0), so gaps in time show as gaps.
func StackedColumns(cols []Column, totalName, partName string) Chart {
	if len(cols) == 0 {
		return Chart{Empty: true}
	}
	const height, axis, top = 200, 24, 8
	var max int64 = 1
	for _, c := range cols {
		if c.Total > max {
			max = c.Total
		}
	}
	step := math.Max(4, math.Min(40, 760/float64(len(cols))))
	w := int(step*float64(len(cols))) + 60
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart columns" role="img" viewBox="0 0 %d %d" width="100%%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">`, w, height+axis+top)
	fmt.Fprintf(&b, `<text class="axis" x="0" y="%d">%d</text>`, top+10, max)
	fmt.Fprintf(&b, `<line class="baseline" x1="50" x2="%d" y1="%d" y2="%d"/>`, w, top+height, top+height)
	labelEvery := int(math.Ceil(float64(len(cols)) / 12))
	for i, c := range cols {
		x := 50 + float64(i)*step
		th := float64(c.Total) / float64(max) * height
		ph := float64(c.Part) / float64(max) * height
		fmt.Fprintf(&b, `<rect class="total" x="%.2f" y="%.2f" width="%.2f" height="%.2f" data-count="%d"><title>%s: %d %s, %d %s</title></rect>`,
			x, top+height-th, step*0.8, th, c.Total, esc(c.Label), c.Total, esc(totalName), c.Part, esc(partName))
		fmt.Fprintf(&b, `<rect class="part" x="%.2f" y="%.2f" width="%.2f" height="%.2f" data-count="%d"/>`,
			x, top+height-ph, step*0.8, ph, c.Part)
		if i%labelEvery == 0 {
			fmt.Fprintf(&b, `<text class="axis" x="%.2f" y="%d">%s</text>`, x, top+height+16, esc(c.Label))
		}
	}
	b.WriteString(`</svg>`)
	return Chart{SVG: template.HTML(b.String())}
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
