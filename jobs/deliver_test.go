package jobs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// mailbox is a real SMTP server (go-smtp) on loopback that records every
// message it accepts.
type mailbox struct {
	addr     string
	caPool   *x509.CertPool
	mu       sync.Mutex
	messages []*mail.Message
	raw      []string
	rcpts    [][]string
}

type mailboxOptions struct {
	tls      bool // offer STARTTLS
	implicit bool // TLS from the first byte
	user     string
	password string
}

func startMailbox(t *testing.T, o mailboxOptions) *mailbox {
	t.Helper()
	mb := &mailbox{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &mailSession{mb: mb, user: o.user, password: o.password}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.AllowInsecureAuth = !o.tls && !o.implicit
	var l net.Listener
	var err error
	if o.tls || o.implicit {
		var cfg *tls.Config
		cfg, mb.caPool = selfSigned(t)
		srv.TLSConfig = cfg
		if o.implicit {
			l, err = tls.Listen("tcp", "127.0.0.1:0", cfg)
		}
	}
	if l == nil && err == nil {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	mb.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return mb
}

func (mb *mailbox) count() int {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return len(mb.messages)
}

type mailSession struct {
	mb             *mailbox
	user, password string
	authed         bool
	rcpts          []string
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, password string) error {
		if user != s.user || password != s.password {
			return errors.New("bad credentials")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *mailSession) Mail(string, *smtp.MailOptions) error {
	if s.user != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}
func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := mail.ReadMessage(strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	s.mb.mu.Lock()
	defer s.mb.mu.Unlock()
	s.mb.messages = append(s.mb.messages, m)
	s.mb.raw = append(s.mb.raw, string(b))
	s.mb.rcpts = append(s.mb.rcpts, s.rcpts)
	return nil
}
func (s *mailSession) Reset()        { s.rcpts = nil }
func (s *mailSession) Logout() error { return nil }

// selfSigned is a certificate for 127.0.0.1 and the pool that trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// commsRig is a store with people who chose their channels, and a clock the test moves.
type commsRig struct {
	s     *store.Store
	clock *testClock
	log   *slog.Logger
}

func newCommsRig(t *testing.T) *commsRig {
	s := storetest.Seeded(t, nil)
	clock := &testClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	s.Now = clock.Now
	return &commsRig{s: s, clock: clock, log: slog.New(slog.DiscardHandler)}
}

// person makes a user with the given channels on.
func (g *commsRig) person(t *testing.T, email string, emailOn, chatOn bool) store.User {
	t.Helper()
	u := storetest.User(t, g.s, email)
	err := g.s.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.SetPreferences(context.Background(), store.System, u.ID, store.Preferences{Inbox: true, Email: emailOn, Chat: chatOn}, store.Offered{Email: true, Chat: true})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (g *commsRig) notify(t *testing.T, u store.User, key string) {
	t.Helper()
	err := g.s.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.Notify(context.Background(), store.Notification{UserID: u.ID, Kind: "test", Title: "Region prn drains", Body: "Move your devserver by Friday.", Link: "/devservers", IdempotencyKey: key})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (g *commsRig) deliveries(t *testing.T, channel string) []store.Delivery {
	t.Helper()
	ds, err := g.s.Deliveries(context.Background(), store.DeliveryFilter{Channel: channel, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func (g *commsRig) deliver(t *testing.T, senders Senders) DeliverResult {
	t.Helper()
	res, err := Deliver(context.Background(), g.s, senders, g.log)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func emailSender(t *testing.T, mb *mailbox, tlsMode, user, password string) *EmailSender {
	t.Helper()
	cfg := EmailConfig{Addr: mb.addr, TLS: tlsMode, User: user, Password: password, From: "devport@devport.test", BaseURL: "https://devport.test", Timeout: 5 * time.Second}
	if mb.caPool != nil {
		cfg.TLSConfig = &tls.Config{RootCAs: mb.caPool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	}
	e, err := NewEmailSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEmailDelivery(t *testing.T) {
	for _, c := range []struct {
		name string
		mb   mailboxOptions
		tls  string
	}{
		{"over STARTTLS with a password", mailboxOptions{tls: true, user: "devport", password: "s3cret"}, SMTPTLSStartTLS},
		{"over implicit TLS with a password", mailboxOptions{implicit: true, user: "devport", password: "s3cret"}, SMTPTLSImplicit},
		{"in plain text without authentication", mailboxOptions{}, SMTPTLSNone},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newCommsRig(t)
			mb := startMailbox(t, c.mb)
			ann := g.person(t, "ann@example.com", true, false)
			bob := g.person(t, "bob@example.com", false, false) // inbox only
			g.notify(t, ann, "drain:prn:ann")
			g.notify(t, bob, "drain:prn:bob")
			senders := Senders{Email: emailSender(t, mb, c.tls, c.mb.user, c.mb.password)}

			res := g.deliver(t, senders)
			if res.Sent != 1 || mb.count() != 1 {
				t.Fatalf("sent %+v, mailbox holds %d", res, mb.count())
			}
			m := mb.messages[0]
			if got := m.Header.Get("To"); !strings.Contains(got, "ann@example.com") {
				t.Errorf("To: %q", got)
			}
			if got := m.Header.Get("Subject"); got != "Region prn drains" {
				t.Errorf("Subject: %q", got)
			}
			if got, want := m.Header.Get("Message-ID"), "<"+MessageID("drain:prn:ann", "devport.test")+">"; got != want {
				t.Errorf("Message-ID %q, want %q", got, want)
			}
			body, _ := io.ReadAll(m.Body)
			if !strings.Contains(string(body), "Move your devserver by Friday.") || !strings.Contains(string(body), "https://devport.test/devservers") {
				t.Errorf("body: %s", body)
			}
			ds := g.deliveries(t, store.ChannelEmail)
			if len(ds) != 1 || ds[0].State != store.DeliverySent || ds[0].Attempts != 1 || ds[0].SentAt == nil {
				t.Errorf("email deliveries: %+v", ds)
			}
			if inbox := g.deliveries(t, store.ChannelInbox); len(inbox) != 2 || inbox[0].State != store.DeliverySent {
				t.Errorf("inbox deliveries: %+v, want one per person, sent", inbox)
			}

			// A retried or repeated run finds nothing due and sends nothing again.
			g.clock.Add(time.Hour)
			if res := g.deliver(t, senders); res.Sent != 0 || mb.count() != 1 {
				t.Errorf("a second run sent %+v; the mailbox holds %d", res, mb.count())
			}
		})
	}
}

func TestEmailWithWrongPasswordFailsTheAttempt(t *testing.T) {
	g := newCommsRig(t)
	mb := startMailbox(t, mailboxOptions{tls: true, user: "devport", password: "s3cret"})
	ann := g.person(t, "ann@example.com", true, false)
	g.notify(t, ann, "k1")
	res := g.deliver(t, Senders{Email: emailSender(t, mb, SMTPTLSStartTLS, "devport", "wrong")})
	if res.Retrying != 1 || mb.count() != 0 {
		t.Fatalf("result %+v, mailbox %d", res, mb.count())
	}
	d := g.deliveries(t, store.ChannelEmail)[0]
	if d.State != store.DeliveryPending || d.Attempts != 1 || d.LastError == "" || strings.Contains(d.LastError, "wrong") {
		t.Errorf("delivery after a refused login: %+v", d)
	}
}

func TestTwoDeliverRunsAtOnceSendEachMessageOnce(t *testing.T) {
	g := newCommsRig(t)
	mb := startMailbox(t, mailboxOptions{})
	var hooks sync.Mutex
	posts := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hooks.Lock()
		posts[r.Header.Get(IdempotencyHeader)]++
		hooks.Unlock()
	}))
	defer hook.Close()
	chat, err := NewChatSender(hook.URL, "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	senders := Senders{Email: emailSender(t, mb, SMTPTLSNone, "", ""), Chat: chat}
	const people = 12
	for i := range people {
		u := g.person(t, string(rune('a'+i))+"@example.com", true, true)
		g.notify(t, u, "once:"+u.Email)
	}
	var wg sync.WaitGroup
	results := make([]DeliverResult, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := Deliver(context.Background(), g.s, senders, g.log)
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		}()
	}
	wg.Wait()
	sent := 0
	for _, r := range results {
		sent += r.Sent
	}
	if sent != 2*people || mb.count() != people {
		t.Fatalf("runs sent %d (%+v), the mailbox holds %d; want %d emails", sent, results, mb.count(), people)
	}
	ids := map[string]bool{}
	for _, m := range mb.messages {
		ids[m.Header.Get("Message-ID")] = true
	}
	if len(ids) != people {
		t.Errorf("%d distinct Message-IDs among %d messages", len(ids), people)
	}
	if len(posts) != people {
		t.Errorf("the webhook saw %d keys, want %d", len(posts), people)
	}
	for k, n := range posts {
		if n != 1 {
			t.Errorf("chat message %s posted %d times", k, n)
		}
	}
}

func TestUnreachableChannelsAreRetriedThenFailVisibly(t *testing.T) {
	g := newCommsRig(t)
	// A port nobody listens on: take one and close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	email, err := NewEmailSender(EmailConfig{Addr: dead, TLS: SMTPTLSNone, From: "devport@devport.test", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	var mu sync.Mutex
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		http.Error(w, "channel_not_found", http.StatusNotFound)
	}))
	defer hook.Close()
	chat, _ := NewChatSender(hook.URL, "", 2*time.Second)
	senders := Senders{Email: email, Chat: chat}
	ann := g.person(t, "ann@example.com", true, true)
	g.notify(t, ann, "unreachable")

	for attempt := 1; attempt <= store.DeliveryMaxAttempts; attempt++ {
		res := g.deliver(t, senders)
		if attempt < store.DeliveryMaxAttempts && res.Retrying != 2 {
			t.Fatalf("attempt %d: %+v", attempt, res)
		}
		// Before the backoff has passed nothing is tried.
		if res := g.deliver(t, senders); res.Sent+res.Retrying+res.Failed != 0 {
			t.Fatalf("attempt %d was retried before its backoff: %+v", attempt, res)
		}
		for _, d := range g.deliveries(t, "") {
			if d.Channel == store.ChannelInbox {
				continue
			}
			if d.Attempts != attempt {
				t.Errorf("%s: %d attempts after %d runs", d.Channel, d.Attempts, attempt)
			}
			if attempt < store.DeliveryMaxAttempts {
				if d.State != store.DeliveryPending || d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(g.clock.Now().Add(store.DeliveryBackoff(attempt))) {
					t.Errorf("%s after attempt %d: %s, next %v", d.Channel, attempt, d.State, d.NextAttemptAt)
				}
			}
		}
		g.clock.Add(store.DeliveryBackoff(attempt))
	}
	for _, d := range g.deliveries(t, "") {
		switch d.Channel {
		case store.ChannelEmail:
			if d.State != store.DeliveryFailed || !strings.Contains(d.LastError, "connection refused") {
				t.Errorf("email: %s %q", d.State, d.LastError)
			}
		case store.ChannelChat:
			if d.State != store.DeliveryFailed || !strings.Contains(d.LastError, "404") || !strings.Contains(d.LastError, "channel_not_found") {
				t.Errorf("chat: %s %q", d.State, d.LastError)
			}
		}
	}
	if calls != store.DeliveryMaxAttempts {
		t.Errorf("the webhook was called %d times, want %d", calls, store.DeliveryMaxAttempts)
	}
	// Failed for good: later runs leave it alone.
	g.clock.Add(24 * time.Hour)
	if res := g.deliver(t, senders); res != (DeliverResult{}) {
		t.Errorf("a failed delivery was tried again: %+v", res)
	}

	// An admin retries the email once the server is back.
	mb := startMailbox(t, mailboxOptions{})
	var emailID int64
	for _, d := range g.deliveries(t, store.ChannelEmail) {
		emailID = d.ID
	}
	err = g.s.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.RetryDelivery(context.Background(), store.System, emailID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	senders.Email = emailSender(t, mb, SMTPTLSNone, "", "")
	if res := g.deliver(t, senders); res.Sent != 1 || mb.count() != 1 {
		t.Errorf("after the retry: %+v, mailbox %d", res, mb.count())
	}
}

func TestAChannelTurnedOffFailsItsDeliveries(t *testing.T) {
	g := newCommsRig(t)
	ann := g.person(t, "ann@example.com", false, true)
	g.notify(t, ann, "chat-off")
	res := g.deliver(t, Senders{})
	if res.Retrying != 1 {
		t.Fatalf("%+v", res)
	}
	d := g.deliveries(t, store.ChannelChat)[0]
	if !strings.Contains(d.LastError, "chat is not set up") {
		t.Errorf("last error %q", d.LastError)
	}
}

func TestChatWebhookMessage(t *testing.T) {
	g := newCommsRig(t)
	var got struct {
		Text string `json:"text"`
	}
	var key, ctype string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ctype = r.Header.Get(IdempotencyHeader), r.Header.Get("Content-Type")
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
	}))
	defer hook.Close()
	chat, _ := NewChatSender(hook.URL, "https://devport.test", 5*time.Second)
	ann := g.person(t, "ann@example.com", false, true)
	g.notify(t, ann, "chat-1")
	if res := g.deliver(t, Senders{Chat: chat}); res.Sent != 1 {
		t.Fatalf("%+v", res)
	}
	if key != "chat-1" || ctype != "application/json" {
		t.Errorf("headers: key %q, type %q", key, ctype)
	}
	for _, want := range []string{"ann@example.com", "Region prn drains", "Move your devserver by Friday.", "https://devport.test/devservers"} {
		if !strings.Contains(got.Text, want) {
			t.Errorf("text %q lacks %q", got.Text, want)
		}
	}
}

func TestSenderSettingsAreChecked(t *testing.T) {
	for _, c := range []EmailConfig{
		{Addr: "mail.example.com", TLS: "none", From: "a@b.c"},
		{Addr: "mail.example.com:0", TLS: "none", From: "a@b.c"},
		{Addr: "mail.example.com:25", TLS: "ssl", From: "a@b.c"},
		{Addr: "mail.example.com:25", TLS: "none", From: "not an address"},
	} {
		if _, err := NewEmailSender(c); err == nil {
			t.Errorf("%+v was accepted", c)
		}
	}
	for _, u := range []string{"ftp://hooks.example.com/x", "hooks.example.com/x", ""} {
		if _, err := NewChatSender(u, "", 0); err == nil {
			t.Errorf("%q was accepted", u)
		}
	}
}

// A sender that dies after the SMTP server took the message but before the
// send was recorded leaves its claim to run out; the next run sends again,
// and the copy carries the same Message-ID, so mail systems keep one.
func TestASendLostBeforeItWasRecordedIsResentWithTheSameMessageID(t *testing.T) {
	g := newCommsRig(t)
	mb := startMailbox(t, mailboxOptions{})
	ann := g.person(t, "ann@example.com", true, false)
	g.notify(t, ann, "crash-after-send")
	email := emailSender(t, mb, SMTPTLSNone, "", "")
	ctx := context.Background()
	due, err := g.s.DueDeliveries(ctx, g.s.Now(), 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("%v %v", due, err)
	}
	var d store.Delivery
	err = g.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		d, _, err = tx.ClaimDelivery(ctx, due[0].ID, tx.Now().Add(claimFor))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := email.Send(ctx, d); err != nil { // ...and the process dies here
		t.Fatal(err)
	}
	if res := g.deliver(t, Senders{Email: email}); res.Sent != 0 {
		t.Fatalf("a run took over a live claim: %+v", res)
	}
	g.clock.Add(claimFor)
	if res := g.deliver(t, Senders{Email: email}); res.Sent != 1 {
		t.Fatalf("the run after the claim ran out: %+v", res)
	}
	if mb.count() != 2 || mb.messages[0].Header.Get("Message-ID") != mb.messages[1].Header.Get("Message-ID") {
		t.Errorf("%d messages, Message-IDs differ", mb.count())
	}
	if ds := g.deliveries(t, store.ChannelEmail); ds[0].State != store.DeliverySent || ds[0].Attempts != 2 {
		t.Errorf("%+v", ds[0])
	}
}
