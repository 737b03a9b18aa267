package bench

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fanoutLines is a results file as scripts/bench writes it: comments,
// other benchmarks' lines, and 5000 measured twice (the last counts).
const fanoutLines = `# kanade abc123, 2026-01-01T00:00:00Z
# kanade bench fanout --agents 1000,5000,10000
fanout agents=1000 floor_s=0.0210 acked_s=0.3000 ratio=14.29 sql_s=0.5000 sql_ratio=23.81 p50_ms=150 p99_ms=280 results=1000
fanout agents=5000 floor_s=0.5000 acked_s=9.0000 ratio=18.00 sql_s=9.5000 sql_ratio=19.00 p50_ms=4000 p99_ms=8000 results=5000
fanout agents=10000 floor_s=0.2000 acked_s=2.5000 ratio=12.50 sql_s=3.0000 sql_ratio=15.00 p50_ms=1300 p99_ms=2400 results=10000
storm agents=1000 online_s=1.2 broker_peak_rss_mib=200 crashed=false restart_s=0.5 sockets_s=1 dials=1000 backend_cpu_s=2
fanout agents=5000 floor_s=0.0900 acked_s=1.2000 ratio=13.33 sql_s=1.5000 sql_ratio=16.67 p50_ms=600 p99_ms=1150 results=5000
rollout agents=1000 jitter_s=0 size_mib=12 total_s=40
footprint idle_secs=300 rss_mib=11.8 cpu_pct=0.020
`

func TestParseFanout(t *testing.T) {
	pts, err := ParseFanout(strings.NewReader(fanoutLines))
	if err != nil {
		t.Fatal(err)
	}
	want := []FanoutPoint{{1000, 150, 280, 21}, {5000, 600, 1150, 90}, {10000, 1300, 2400, 200}}
	if len(pts) != len(want) {
		t.Fatalf("got %v, want %v", pts, want)
	}
	for i := range want {
		g, w := pts[i], want[i]
		if g.Agents != w.Agents || !near(g.P50, w.P50) || !near(g.P99, w.P99) || !near(g.Floor, w.Floor) {
			t.Errorf("point %d: got %+v, want %+v", i, g, w)
		}
	}
	for _, bad := range []string{"fanout agents=10 floor_s=0.1 p50_ms=1", "fanout agents=x floor_s=0.1 p50_ms=1 p99_ms=2", "fanout agents=10 floor_s=-1 p50_ms=1 p99_ms=2"} {
		if _, err := ParseFanout(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestPlot draws the table through the command's path (file in, file out)
// and checks the PNG: it decodes, has the asked size, and along every
// segment of every series, at points between the markers, the series'
// colour is there (within the line's width and a pixel of rounding).
func TestPlot(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "results.txt"), filepath.Join(dir, "plot.png")
	if err := os.WriteFile(in, []byte(fanoutLines), 0o600); err != nil {
		t.Fatal(err)
	}
	o := PlotOptions{Width: 640, Height: 400}
	if err := PlotFile(in, out, o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if got := img.Bounds().Size(); got != image.Pt(640, 400) {
		t.Fatalf("size %v, want 640×400", got)
	}
	pts, err := ParseFanout(strings.NewReader(fanoutLines))
	if err != nil {
		t.Fatal(err)
	}
	l, err := newPlotLayout(pts, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, se := range plotSeries {
		for i := 1; i < len(pts); i++ {
			a := l.pt(float64(pts[i-1].Agents), se.y(pts[i-1]))
			c := l.pt(float64(pts[i].Agents), se.y(pts[i]))
			for _, f := range []float64{0.25, 0.5, 0.75} {
				p := image.Pt(a.X+int(f*float64(c.X-a.X)), a.Y+int(f*float64(c.Y-a.Y)))
				if !colourNear(img, p, se.col, 2) {
					t.Errorf("%s: no %v pixel near %v (%.0f%% from %d to %d agents)", se.label, se.col, p, f*100, pts[i-1].Agents, pts[i].Agents)
				}
			}
		}
		for _, pt := range pts {
			if p := l.pt(float64(pt.Agents), se.y(pt)); !colourNear(img, p, se.col, 0) {
				t.Errorf("%s: no marker at %v for %d agents", se.label, p, pt.Agents)
			}
		}
	}
	// And the rest is mostly background: the plot is not a filled box.
	bg := 0
	for y := 0; y < 400; y++ {
		for x := 0; x < 640; x++ {
			if r, g, b, _ := img.At(x, y).RGBA(); r == 0xffff && g == 0xffff && b == 0xffff {
				bg++
			}
		}
	}
	if bg < 640*400*7/10 {
		t.Errorf("only %d of %d pixels are background", bg, 640*400)
	}
}

func colourNear(img image.Image, p image.Point, c color.RGBA, radius int) bool {
	for dy := -radius; dy <= radius; dy++ {
		for dx := -radius; dx <= radius; dx++ {
			if color.RGBAModel.Convert(img.At(p.X+dx, p.Y+dy)) == c {
				return true
			}
		}
	}
	return false
}

func TestPlotRefusesNothing(t *testing.T) {
	if err := Plot(&bytes.Buffer{}, nil, PlotOptions{}); err == nil {
		t.Error("an empty plot was drawn")
	}
	if err := Plot(&bytes.Buffer{}, []FanoutPoint{{10, 1, 2, 0.5}}, PlotOptions{Width: 10, Height: 10}); err == nil {
		t.Error("a 10×10 plot was drawn")
	}
}
