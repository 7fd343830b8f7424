package views

import (
	"testing"
)

func TestChartScale(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{{0.3, 0.5}, {1, 1}, {1.2, 2}, {2.1, 2.5}, {3, 5}, {7, 10}, {42, 50}, {180, 200}} {
		if got := niceCeil(c.in); got != c.want {
			t.Errorf("niceCeil(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	for _, c := range []struct {
		values []float64
		top    float64
	}{{[]float64{0}, 4}, {[]float64{3}, 4}, {[]float64{5}, 8}, {[]float64{13}, 16}} {
		ch := BarChart{Categories: []string{"a"}, Series: []ChartSeries{{Values: c.values}}, Whole: true}
		if got := ch.max(); got != c.top {
			t.Errorf("whole chart of %v tops at %v, want %v", c.values, got, c.top)
		}
	}
}

func TestStackedBarsAddUp(t *testing.T) {
	ch := BarChart{Categories: []string{"2026-10", "2026-11"}, Stacked: true, Whole: true, Series: []ChartSeries{
		{Name: "SEV1", Fill: "#c62828", Values: []float64{0, 1}},
		{Name: "SEV3", Fill: "#f9a825", Values: []float64{2, 3}},
	}}
	bars := ch.bars()
	if len(bars) != 3 {
		t.Fatalf("%d bars, want 3 (a zero draws nothing)", len(bars))
	}
	// The axis tops at 4 over 228 pixels: 1 is 57 pixels.
	oct, novLow, novHigh := bars[0], bars[1], bars[2]
	if oct.H != 114 || novLow.H != 57 || novHigh.H != 171 {
		t.Errorf("heights %d %d %d", oct.H, novLow.H, novHigh.H)
	}
	if novLow.Y+novLow.H != ch.baseY() || novHigh.Y+novHigh.H != novLow.Y {
		t.Errorf("November's bars do not stack: %+v %+v", novLow, novHigh)
	}
	if novHigh.Label != "2026-11, SEV3: 3" || novHigh.Fill != "#f9a825" {
		t.Errorf("label %q fill %q", novHigh.Label, novHigh.Fill)
	}
	grouped := BarChart{Categories: []string{"m"}, Series: []ChartSeries{{Values: []float64{1}}, {Values: []float64{2}}}}
	gb := grouped.bars()
	if len(gb) != 2 || gb[0].X >= gb[1].X || gb[0].Y+gb[0].H != gb[1].Y+gb[1].H || gb[1].H != 2*gb[0].H {
		t.Errorf("grouped bars %+v", gb)
	}
}
