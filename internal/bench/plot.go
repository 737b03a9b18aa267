package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// FanoutPoint is one fleet size of a fan-out run, in milliseconds.
type FanoutPoint struct {
	Agents   int
	P50, P99 float64
	// Floor is the floor fan-out (floor_s) in ms: the time until all N
	// plain responders answered, which per-agent latencies cannot beat.
	Floor float64
}

// ParseFanout reads summary lines and returns the fanout ones as points
// sorted by fleet size; for a size given more than once, the last line
// counts (a re-run replaces). Other lines are ignored; a fanout line
// without agents, p50_ms, p99_ms or floor_s is an error.
func ParseFanout(r io.Reader) ([]FanoutPoint, error) {
	by := map[int]FanoutPoint{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "fanout" {
			continue
		}
		kv := map[string]string{}
		for _, p := range f[1:] {
			k, v, _ := strings.Cut(p, "=")
			kv[k] = v
		}
		var p FanoutPoint
		n, err := strconv.Atoi(kv["agents"])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("line %d: fanout line without a valid agents=", line)
		}
		p.Agents = n
		for _, x := range []struct {
			key   string
			dst   *float64
			scale float64
		}{{"p50_ms", &p.P50, 1}, {"p99_ms", &p.P99, 1}, {"floor_s", &p.Floor, 1000}} {
			v, err := strconv.ParseFloat(kv[x.key], 64)
			if err != nil || v < 0 || math.IsInf(v, 0) {
				return nil, fmt.Errorf("line %d: fanout line without a valid %s=", line, x.key)
			}
			*x.dst = v * x.scale
		}
		by[n] = p
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := make([]FanoutPoint, 0, len(by))
	for _, p := range by {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b FanoutPoint) int { return a.Agents - b.Agents })
	return out, nil
}

// PlotOptions size the image (defaults 800 × 500).
type PlotOptions struct {
	Width, Height int
}

// PlotFile reads summary lines from in and writes the fan-out plot to out.
func PlotFile(in, out string, o PlotOptions) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	pts, err := ParseFanout(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("plot: %s: %w", in, err)
	}
	if len(pts) == 0 {
		return fmt.Errorf("plot: %s has no fanout lines", in)
	}
	var buf bytes.Buffer
	if err := Plot(&buf, pts, o); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

// Series colours, and the plot's own.
var (
	colP50   = color.RGBA{0x1f, 0x77, 0xb4, 0xff} // blue
	colP99   = color.RGBA{0xd6, 0x27, 0x28, 0xff} // red
	colFloor = color.RGBA{0x2c, 0xa0, 0x2c, 0xff} // green
	colBG    = color.RGBA{0xff, 0xff, 0xff, 0xff}
	colAxis  = color.RGBA{0x20, 0x20, 0x20, 0xff}
	colGrid  = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
)

// series is one line of the plot.
type series struct {
	label string
	col   color.RGBA
	y     func(FanoutPoint) float64
}

var plotSeries = []series{
	{"p99 per agent", colP99, func(p FanoutPoint) float64 { return p.P99 }},
	{"p50 per agent", colP50, func(p FanoutPoint) float64 { return p.P50 }},
	{"floor (all n replies)", colFloor, func(p FanoutPoint) float64 { return p.Floor }},
}

// plotLayout maps data to pixels.
type plotLayout struct {
	w, h         int
	area         image.Rectangle // the plotting area inside the axes
	xMax, xStep  float64
	yMax, yStep  float64
	fontScale    int
	legendOrigin image.Point
}

const (
	marginLeft   = 90
	marginRight  = 30
	marginTop    = 50
	marginBottom = 70
)

func newPlotLayout(pts []FanoutPoint, o PlotOptions) (plotLayout, error) {
	if o.Width == 0 {
		o.Width = 800
	}
	if o.Height == 0 {
		o.Height = 500
	}
	if o.Width < 300 || o.Height < 200 || o.Width > 10000 || o.Height > 10000 {
		return plotLayout{}, fmt.Errorf("image %d×%d: expected 300–10000 × 200–10000 pixels", o.Width, o.Height)
	}
	if len(pts) == 0 {
		return plotLayout{}, errors.New("no fanout lines to plot")
	}
	var xm, ym float64
	for _, p := range pts {
		xm = max(xm, float64(p.Agents))
		for _, s := range plotSeries {
			ym = max(ym, s.y(p))
		}
	}
	l := plotLayout{w: o.Width, h: o.Height, fontScale: 2}
	l.area = image.Rect(marginLeft, marginTop, o.Width-marginRight, o.Height-marginBottom)
	l.xStep, l.xMax = niceAxis(xm)
	l.yStep, l.yMax = niceAxis(ym)
	l.legendOrigin = image.Pt(l.area.Min.X+12, l.area.Min.Y+10)
	return l, nil
}

// pt is the pixel of (agents, ms).
func (l plotLayout) pt(x, y float64) image.Point {
	px := float64(l.area.Min.X) + x/l.xMax*float64(l.area.Dx())
	py := float64(l.area.Max.Y) - y/l.yMax*float64(l.area.Dy())
	return image.Pt(int(math.Round(px)), int(math.Round(py)))
}

// niceAxis picks a tick step of 1, 2 or 5 × 10^k giving about five ticks
// and the axis maximum, a whole number of steps at or above m.
func niceAxis(m float64) (step, top float64) {
	if !(m > 0) {
		return 0.2, 1
	}
	raw := m / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * mag
	for _, f := range []float64{1, 2, 5} {
		if f*mag >= raw {
			step = f * mag
			break
		}
	}
	return step, math.Ceil(m/step-1e-9) * step
}

// Plot draws per-agent p50 and p99 latency and the floor against the
// fleet size as a PNG: axes with ticks and grid, one line and marker per
// series, a legend and a title.
func Plot(w io.Writer, pts []FanoutPoint, o PlotOptions) error {
	l, err := newPlotLayout(pts, o)
	if err != nil {
		return err
	}
	img := image.NewRGBA(image.Rect(0, 0, l.w, l.h))
	draw.Draw(img, img.Bounds(), &image.Uniform{colBG}, image.Point{}, draw.Src)
	s := l.fontScale

	// Grid, ticks and their labels.
	for x := 0.0; x <= l.xMax+l.xStep/2; x += l.xStep {
		p := l.pt(x, 0)
		vline(img, p.X, l.area.Min.Y, l.area.Max.Y, colGrid)
		vline(img, p.X, l.area.Max.Y, l.area.Max.Y+6, colAxis)
		lbl := tickLabel(x, l.xStep)
		drawText(img, p.X-textWidth(lbl, s)/2, l.area.Max.Y+12, lbl, s, colAxis)
	}
	for y := 0.0; y <= l.yMax+l.yStep/2; y += l.yStep {
		p := l.pt(0, y)
		hline(img, l.area.Min.X, l.area.Max.X, p.Y, colGrid)
		hline(img, l.area.Min.X-6, l.area.Min.X, p.Y, colAxis)
		lbl := tickLabel(y, l.yStep)
		drawText(img, l.area.Min.X-10-textWidth(lbl, s), p.Y-glyphH*s/2, lbl, s, colAxis)
	}
	// Axes.
	hline(img, l.area.Min.X, l.area.Max.X, l.area.Max.Y, colAxis)
	vline(img, l.area.Min.X, l.area.Min.Y, l.area.Max.Y, colAxis)
	xl := "agents (n)"
	drawText(img, l.area.Min.X+(l.area.Dx()-textWidth(xl, s))/2, l.h-glyphH*s-12, xl, s, colAxis)
	drawText(img, 10, l.area.Min.Y-glyphH*s-16, "ms", s, colAxis)
	title := "kanade bench fanout: latency per agent vs fleet size"
	drawText(img, (l.w-textWidth(title, s))/2, 12, title, s, colAxis)

	// Series: lines first, markers on top.
	for _, se := range plotSeries {
		for i := 1; i < len(pts); i++ {
			a := l.pt(float64(pts[i-1].Agents), se.y(pts[i-1]))
			b := l.pt(float64(pts[i].Agents), se.y(pts[i]))
			thickLine(img, a, b, se.col)
		}
	}
	for _, se := range plotSeries {
		for _, p := range pts {
			c := l.pt(float64(p.Agents), se.y(p))
			fillRect(img, image.Rect(c.X-4, c.Y-4, c.X+5, c.Y+5), se.col)
		}
	}

	// Legend.
	lo := l.legendOrigin
	lineH := glyphH*s + 8
	wmax := 0
	for _, se := range plotSeries {
		wmax = max(wmax, textWidth(se.label, s))
	}
	box := image.Rect(lo.X-6, lo.Y-6, lo.X+36+wmax+6, lo.Y+lineH*len(plotSeries)-2)
	fillRect(img, box, colBG)
	rectOutline(img, box, colGrid)
	for i, se := range plotSeries {
		y := lo.Y + i*lineH + glyphH*s/2
		thickLine(img, image.Pt(lo.X, y), image.Pt(lo.X+26, y), se.col)
		drawText(img, lo.X+34, lo.Y+i*lineH, se.label, s, colAxis)
	}
	return png.Encode(w, img)
}

// tickLabel prints v with as many decimals as the step needs.
func tickLabel(v, step float64) string {
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

func fillRect(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
}

func rectOutline(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	hline(img, r.Min.X, r.Max.X-1, r.Min.Y, c)
	hline(img, r.Min.X, r.Max.X-1, r.Max.Y-1, c)
	vline(img, r.Min.X, r.Min.Y, r.Max.Y-1, c)
	vline(img, r.Max.X-1, r.Min.Y, r.Max.Y-1, c)
}

// thickLine draws a 3-pixel-wide segment from a to b.
func thickLine(img *image.RGBA, a, b image.Point, c color.RGBA) {
	dx, dy := b.X-a.X, b.Y-a.Y
	steps := max(abs(dx), abs(dy), 1)
	for i := 0; i <= steps; i++ {
		x := a.X + int(math.Round(float64(dx*i)/float64(steps)))
		y := a.Y + int(math.Round(float64(dy*i)/float64(steps)))
		fillRect(img, image.Rect(x-1, y-1, x+2, y+2), c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// The built-in font: 5 × 7 pixel glyphs (g, j, p, q and y have two more
// rows below the baseline), one column of spacing, drawn at an integer
// scale. Upper case is drawn as lower case; a rune without a glyph is
// drawn as a hollow box.
const (
	glyphW = 5
	glyphH = 7
)

func textWidth(s string, scale int) int {
	n := len([]rune(s))
	if n == 0 {
		return 0
	}
	return (n*(glyphW+1) - 1) * scale
}

// drawText draws s with its top-left corner at (x, y).
func drawText(img *image.RGBA, x, y int, s string, scale int, c color.RGBA) {
	for _, r := range s {
		g, ok := font5x7[unicode.ToLower(r)]
		if !ok {
			g = []string{"#####", "#   #", "#   #", "#   #", "#   #", "#   #", "#####"}
		}
		for row, line := range g {
			for col, ch := range line {
				if ch == '#' {
					fillRect(img, image.Rect(x+col*scale, y+row*scale, x+(col+1)*scale, y+(row+1)*scale), c)
				}
			}
		}
		x += (glyphW + 1) * scale
	}
}

var font5x7 = map[rune][]string{
	' ': {"     ", "     ", "     ", "     ", "     ", "     ", "     "},
	'0': {" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "},
	'1': {"  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "},
	'2': {" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"},
	'3': {"#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "},
	'4': {"   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "},
	'5': {"#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "},
	'6': {"  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "},
	'7': {"#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "},
	'8': {" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "},
	'9': {" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "},
	'a': {"     ", "     ", " ### ", "    #", " ####", "#   #", " ####"},
	'b': {"#    ", "#    ", "# ## ", "##  #", "#   #", "#   #", "#### "},
	'c': {"     ", "     ", " ### ", "#    ", "#    ", "#   #", " ### "},
	'd': {"    #", "    #", " ## #", "#  ##", "#   #", "#   #", " ####"},
	'e': {"     ", "     ", " ### ", "#   #", "#####", "#    ", " ### "},
	'f': {"  ## ", " #  #", " #   ", "###  ", " #   ", " #   ", " #   "},
	'g': {"     ", "     ", " ####", "#   #", "#   #", "#   #", " ####", "    #", " ### "},
	'h': {"#    ", "#    ", "# ## ", "##  #", "#   #", "#   #", "#   #"},
	'i': {"  #  ", "     ", " ##  ", "  #  ", "  #  ", "  #  ", " ### "},
	'j': {"   # ", "     ", "  ## ", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "},
	'k': {"#    ", "#    ", "#  # ", "# #  ", "##   ", "# #  ", "#  # "},
	'l': {" ##  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "},
	'm': {"     ", "     ", "## # ", "# # #", "# # #", "#   #", "#   #"},
	'n': {"     ", "     ", "# ## ", "##  #", "#   #", "#   #", "#   #"},
	'o': {"     ", "     ", " ### ", "#   #", "#   #", "#   #", " ### "},
	'p': {"     ", "     ", "#### ", "#   #", "#   #", "#   #", "#### ", "#    ", "#    "},
	'q': {"     ", "     ", " ####", "#   #", "#   #", "#   #", " ####", "    #", "    #"},
	'r': {"     ", "     ", "# ## ", "##  #", "#    ", "#    ", "#    "},
	's': {"     ", "     ", " ### ", "#    ", " ### ", "    #", "#### "},
	't': {" #   ", " #   ", "###  ", " #   ", " #   ", " #  #", "  ## "},
	'u': {"     ", "     ", "#   #", "#   #", "#   #", "#  ##", " ## #"},
	'v': {"     ", "     ", "#   #", "#   #", "#   #", " # # ", "  #  "},
	'w': {"     ", "     ", "#   #", "#   #", "# # #", "# # #", " # # "},
	'x': {"     ", "     ", "#   #", " # # ", "  #  ", " # # ", "#   #"},
	'y': {"     ", "     ", "#   #", "#   #", "#   #", "#   #", " ####", "    #", " ### "},
	'z': {"     ", "     ", "#####", "   # ", "  #  ", " #   ", "#####"},
	'.': {"     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "},
	',': {"     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   "},
	':': {"     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "},
	'(': {"   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "},
	')': {" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "},
	'-': {"     ", "     ", "     ", "#####", "     ", "     ", "     "},
	'_': {"     ", "     ", "     ", "     ", "     ", "     ", "#####"},
	'/': {"     ", "    #", "   # ", "  #  ", " #   ", "#    ", "     "},
	'=': {"     ", "     ", "#####", "     ", "#####", "     ", "     "},
	'%': {"##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"},
	'+': {"     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "},
}
