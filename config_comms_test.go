package main

import (
	"io"
	"testing"
)

func TestNotificationSettings(t *testing.T) {
	t.Run("email and chat are off by default", func(t *testing.T) {
		c, err := parseConfig("serve", nil, env(nil), io.Discard, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := notificationSenders(c)
		if err != nil || s.Email != nil || s.Chat != nil || c.SMTPTLS != "starttls" {
			t.Errorf("senders %+v, tls %q, %v", s, c.SMTPTLS, err)
		}
	})
	t.Run("settings turn them on", func(t *testing.T) {
		c, err := parseConfig("serve", []string{"--smtp-tls", "tls"}, env(map[string]string{
			"DEVPORT_SMTP_ADDR": "smtp.example.com:465", "DEVPORT_SMTP_FROM": "devport@example.com",
			"DEVPORT_SMTP_USER": "devport", "DEVPORT_SMTP_PASSWORD": "secret",
			"DEVPORT_CHAT_WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/x",
		}), io.Discard, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := notificationSenders(c)
		if err != nil || s.Email == nil || s.Chat == nil || !s.Offered().Email || !s.Offered().Chat || c.SMTPTLS != "tls" {
			t.Errorf("senders %+v, %v", s, err)
		}
	})
}
