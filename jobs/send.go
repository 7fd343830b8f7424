package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/devport/devport/store"
)

// Sender sends one delivery over its channel. An error is one failed attempt.
type Sender interface {
	Send(ctx context.Context, d store.Delivery) error
}

// Senders are the channels this portal sends over besides the inbox; a nil
// sender is a channel that is off.
type Senders struct {
	Email Sender
	Chat  Sender
}

// Offered tells which channels people may choose.
func (s Senders) Offered() store.Offered {
	return store.Offered{Email: s.Email != nil, Chat: s.Chat != nil}
}

// SMTP TLS modes.
const (
	SMTPTLSNone     = "none"     // plain text (a relay on the same host)
	SMTPTLSStartTLS = "starttls" // upgrade with STARTTLS, required
	SMTPTLSImplicit = "tls"      // TLS from the first byte (port 465)
)

// EmailConfig is how email leaves the portal.
type EmailConfig struct {
	Addr     string // host:port of the SMTP server
	TLS      string // none, starttls or tls
	User     string // "" sends without authentication
	Password string
	From     string
	// BaseURL makes a notification's link absolute, such as https://devport.example.com.
	BaseURL string
	// TLSConfig overrides the TLS settings (tests trust their own certificate).
	TLSConfig *tls.Config
	Timeout   time.Duration
}

// EmailSender sends notifications as plain-text email through an SMTP server.
type EmailSender struct {
	cfg  EmailConfig
	host string
	port int
}

// NewEmailSender checks the configuration and returns the sender.
func NewEmailSender(cfg EmailConfig) (*EmailSender, error) {
	host, portText, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("smtp address %q is not host:port", cfg.Addr)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("smtp address %q has no valid port", cfg.Addr)
	}
	switch cfg.TLS {
	case SMTPTLSNone, SMTPTLSStartTLS, SMTPTLSImplicit:
	default:
		return nil, fmt.Errorf("smtp tls %q is not none, starttls or tls", cfg.TLS)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	m := mail.NewMsg()
	if err := m.From(cfg.From); err != nil {
		return nil, fmt.Errorf("smtp from %q: %w", cfg.From, err)
	}
	return &EmailSender{cfg: cfg, host: host, port: port}, nil
}

// MessageID is the Message-ID an email of the notification carries: derived
// from its idempotency key, so a resent copy is the same message to every
// mail system on the way.
func MessageID(key, fromDomain string) string {
	sum := sha256.Sum256([]byte(key))
	if fromDomain == "" {
		fromDomain = "devport"
	}
	return hex.EncodeToString(sum[:16]) + "@" + fromDomain
}

// Send sends one email.
func (e *EmailSender) Send(ctx context.Context, d store.Delivery) error {
	m := mail.NewMsg()
	if err := m.From(e.cfg.From); err != nil {
		return err
	}
	if err := m.To(d.Email); err != nil {
		return fmt.Errorf("recipient %q: %w", d.Email, err)
	}
	_, domain, _ := strings.Cut(e.cfg.From, "@")
	domain = strings.TrimSuffix(domain, ">")
	m.SetMessageIDWithValue(MessageID(d.IdempotencyKey, domain))
	m.SetDate()
	m.SetGenHeader("X-Devport-Idempotency-Key", d.IdempotencyKey)
	m.Subject(d.Title)
	m.SetBodyString(mail.TypeTextPlain, messageText(d, e.cfg.BaseURL, "\n\n"))
	opts := []mail.Option{mail.WithPort(e.port), mail.WithTimeout(e.cfg.Timeout)}
	switch e.cfg.TLS {
	case SMTPTLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case SMTPTLSStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case SMTPTLSImplicit:
		opts = append(opts, mail.WithSSL())
	}
	if e.cfg.TLSConfig != nil {
		opts = append(opts, mail.WithTLSConfig(e.cfg.TLSConfig))
	}
	if e.cfg.User != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(e.cfg.User), mail.WithPassword(e.cfg.Password))
	}
	c, err := mail.NewClient(e.host, opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		return fmt.Errorf("send email to %s via %s: %w", d.Email, e.cfg.Addr, err)
	}
	return nil
}

// messageText is a notification as plain text: body and an absolute link.
func messageText(d store.Delivery, baseURL, sep string) string {
	parts := []string{}
	if d.Body != "" {
		parts = append(parts, d.Body)
	}
	if d.Link != "" {
		link := d.Link
		if strings.HasPrefix(link, "/") && baseURL != "" {
			link = strings.TrimSuffix(baseURL, "/") + link
		}
		parts = append(parts, "Open in devport: "+link)
	}
	return strings.Join(parts, sep)
}

// ChatSender posts notifications to a Slack-compatible incoming webhook.
type ChatSender struct {
	url     string
	baseURL string
	client  *http.Client
}

// NewChatSender returns a sender for the webhook URL (http or https).
func NewChatSender(webhookURL, baseURL string, timeout time.Duration) (*ChatSender, error) {
	if !strings.HasPrefix(webhookURL, "http://") && !strings.HasPrefix(webhookURL, "https://") {
		return nil, fmt.Errorf("chat webhook %q is not an http(s) URL", webhookURL)
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &ChatSender{url: webhookURL, baseURL: baseURL, client: &http.Client{Timeout: timeout,
		// A redirect is not followed: the message would go to whatever host
		// the answer names. It counts as a failed attempt.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// IdempotencyHeader carries a chat message's idempotency key, for webhooks that deduplicate.
const IdempotencyHeader = "Idempotency-Key"

// Send posts {"text": ...} with the notification, naming its person.
func (c *ChatSender) Send(ctx context.Context, d store.Delivery) error {
	text := d.Email + ": *" + d.Title + "*"
	if rest := messageText(d, c.baseURL, "\n"); rest != "" {
		text += "\n" + rest
	}
	body, err := json.Marshal(map[string]string{"text": text})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("chat webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(IdempotencyHeader, d.IdempotencyKey)
	resp, err := c.client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap() // the URL may hold the webhook's secret: do not log it
		}
		return fmt.Errorf("chat webhook: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("chat webhook answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}
