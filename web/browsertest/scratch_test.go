package browsertest

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func TestScratch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'")
		if r.URL.Path == "/d.js" {
			w.Header().Set("Content-Type", "text/javascript")
			w.Write([]byte(`document.getElementById('b').addEventListener('click', function(){ document.getElementById('b').textContent = confirm('sure?') ? 'yes' : 'no' })`))
			return
		}
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<!DOCTYPE html><html><head><title>x</title></head><body><button id=b>b</button><script src="/d.js"></script></body></html>`))
	}))
	defer srv.Close()
	ctx := New(t)
	Do(t, ctx, 10*time.Second, chromedp.Navigate(srv.URL), chromedp.Click(chromedp.ID("b")))
	txt := Run(t, ctx, 5*time.Second, chromedp.Text(chromedp.ID("b")))
	t.Log(txt, Problems(ctx), Dialogs(ctx))
}
