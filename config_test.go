package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestConfig(t *testing.T) {
	t.Run("defaults run on loopback with the dev login and a simulated fleet", func(t *testing.T) {
		c, err := parseConfig("serve", nil, env(nil), io.Discard, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Addr != "127.0.0.1:8080" || c.DataDir != "data" || !c.DevLogin || c.SimLatency != 3*time.Second {
			t.Errorf("defaults = %+v", c)
		}
		if strings.Join(c.AdminGroups, ",") != "devport-admins" || strings.Join(c.ReviewerGroups, ",") != "devport-reviewers" {
			t.Errorf("groups = %v %v", c.AdminGroups, c.ReviewerGroups)
		}
		if c.DatabasePath() != "data/devport.db" {
			t.Errorf("database = %s", c.DatabasePath())
		}
	})
	t.Run("flags override variables", func(t *testing.T) {
		c, err := parseConfig("serve", []string{"--addr", "127.0.0.1:9000"}, env(map[string]string{"DEVPORT_ADDR": "127.0.0.1:7000", "DEVPORT_SIM_LATENCY": "0s"}), io.Discard, nil)
		if err != nil || c.Addr != "127.0.0.1:9000" || c.SimLatency != 0 {
			t.Errorf("config = %+v, %v", c, err)
		}
	})
	t.Run("the dev login is off by default off loopback and when an issuer is set", func(t *testing.T) {
		c, _ := parseConfig("serve", nil, env(map[string]string{"DEVPORT_ADDR": "0.0.0.0:8080"}), io.Discard, nil)
		if c.DevLogin {
			t.Error("dev login on for a public address")
		}
		c, _ = parseConfig("serve", nil, env(map[string]string{
			"DEVPORT_OIDC_ISSUER": "https://idp.example.com", "DEVPORT_OIDC_CLIENT_ID": "devport",
			"DEVPORT_OIDC_REDIRECT_URL": "https://devport.example.com/auth/oidc/callback",
		}), io.Discard, nil)
		if c.DevLogin {
			t.Error("dev login on with an issuer")
		}
		c, _ = parseConfig("serve", nil, env(map[string]string{"DEVPORT_ADDR": "0.0.0.0:8080", "DEVPORT_DEV_LOGIN": "1"}), io.Discard, nil)
		if !c.DevLogin {
			t.Error("DEVPORT_DEV_LOGIN=1 did not enable it")
		}
	})
	bad := []struct {
		env     map[string]string
		args    []string
		setting string
	}{
		{map[string]string{"DEVPORT_ADDR": "nonsense"}, nil, "DEVPORT_ADDR"},
		{nil, []string{"--addr", "127.0.0.1:99999"}, "DEVPORT_ADDR"},
		{map[string]string{"DEVPORT_SIM_LATENCY": "fast"}, nil, "DEVPORT_SIM_LATENCY"},
		{map[string]string{"DEVPORT_SIM_LATENCY": "-1s"}, nil, "DEVPORT_SIM_LATENCY"},
		{map[string]string{"DEVPORT_DEV_LOGIN": "maybe"}, nil, "DEVPORT_DEV_LOGIN"},
		{map[string]string{"DEVPORT_OIDC_ISSUER": "not a url"}, nil, "DEVPORT_OIDC_ISSUER"},
		{map[string]string{"DEVPORT_OIDC_ISSUER": "https://idp.example.com"}, nil, "DEVPORT_OIDC_CLIENT_ID"},
		{map[string]string{"DEVPORT_OIDC_ISSUER": "https://idp.example.com", "DEVPORT_OIDC_CLIENT_ID": "x"}, nil, "DEVPORT_OIDC_REDIRECT_URL"},
		{map[string]string{"DEVPORT_OIDC_REDIRECT_URL": "https://devport.example.com/wrong"}, nil, "DEVPORT_OIDC_REDIRECT_URL"},
		{map[string]string{"DEVPORT_DATABASE_URL": "postgres://db:port/devport"}, nil, "DEVPORT_DATABASE_URL"},
		{map[string]string{"DEVPORT_DATABASE_URL": "mysql://x"}, nil, "DEVPORT_DATABASE_URL"},
		{map[string]string{"DEVPORT_SESSION_IDLE": "1s"}, nil, "DEVPORT_SESSION_IDLE"},
		{map[string]string{"DEVPORT_SIM_FAILURES": "create=5"}, nil, "DEVPORT_SIM_FAILURES"},
		{map[string]string{"DEVPORT_LOG_LEVEL": "loud"}, nil, "DEVPORT_LOG_LEVEL"},
		{map[string]string{"DEVPORT_BACKUP_INTERVAL": "30m"}, nil, "DEVPORT_BACKUP_INTERVAL"},
		{map[string]string{"DEVPORT_BACKUP_KEEP_LAST": "0"}, nil, "DEVPORT_BACKUP_KEEP_LAST"},
		{map[string]string{"DEVPORT_BACKUP_KEEP_DAYS": "many"}, nil, "DEVPORT_BACKUP_KEEP_DAYS"},
		{map[string]string{"DEVPORT_LEASE_REMINDERS": "soon"}, nil, "DEVPORT_LEASE_REMINDERS"},
		{map[string]string{"DEVPORT_CONTAINER_FRESHNESS": "30s"}, nil, "DEVPORT_CONTAINER_FRESHNESS"},
		{map[string]string{"DEVPORT_CONTAINER_FRESHNESS": "fresh"}, nil, "DEVPORT_CONTAINER_FRESHNESS"},
		{map[string]string{"DEVPORT_CONTAINER_WARNING": "-1h"}, nil, "DEVPORT_CONTAINER_WARNING"},
		{map[string]string{"DEVPORT_LEASE_REMINDERS": "24h,24h"}, nil, "DEVPORT_LEASE_REMINDERS"},
		{map[string]string{"DEVPORT_SMTP_ADDR": "smtp.example.com"}, nil, "DEVPORT_SMTP_ADDR"},
		{map[string]string{"DEVPORT_SMTP_ADDR": "smtp.example.com:0", "DEVPORT_SMTP_FROM": "d@example.com"}, nil, "DEVPORT_SMTP_ADDR"},
		{map[string]string{"DEVPORT_SMTP_TLS": "ssl"}, nil, "DEVPORT_SMTP_TLS"},
		{map[string]string{"DEVPORT_SMTP_FROM": "devport at example"}, nil, "DEVPORT_SMTP_FROM"},
		{map[string]string{"DEVPORT_SMTP_ADDR": "smtp.example.com:587"}, nil, "DEVPORT_SMTP_FROM"},
		{map[string]string{"DEVPORT_SMTP_ADDR": "smtp.example.com:587", "DEVPORT_SMTP_FROM": "d@example.com", "DEVPORT_SMTP_USER": "d"}, nil, "DEVPORT_SMTP_PASSWORD"},
		{map[string]string{"DEVPORT_CHAT_WEBHOOK_URL": "ftp://hooks.example.com/x"}, nil, "DEVPORT_CHAT_WEBHOOK_URL"},
		{map[string]string{"DEVPORT_CHAT_WEBHOOK_URL": "hooks.example.com/x"}, nil, "DEVPORT_CHAT_WEBHOOK_URL"},
		{map[string]string{"DEVPORT_POOL_INTERVAL": "500ms"}, nil, "DEVPORT_POOL_INTERVAL"},
		{map[string]string{"DEVPORT_SSH_ADDR": "nonsense"}, nil, "DEVPORT_SSH_ADDR"},
	}
	for _, b := range bad {
		t.Run("refuses a bad "+b.setting, func(t *testing.T) {
			_, err := parseConfig("serve", b.args, env(b.env), io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), b.setting) || !strings.Contains(err.Error(), "invalid setting") {
				t.Errorf("err = %v, want one naming %s", err, b.setting)
			}
		})
	}
	t.Run("refuses stray arguments and unknown flags", func(t *testing.T) {
		if _, err := parseConfig("serve", []string{"extra"}, env(nil), io.Discard, nil); err == nil {
			t.Error("accepted a stray argument")
		}
		if _, err := parseConfig("serve", []string{"--colour", "blue"}, env(nil), io.Discard, nil); err == nil {
			t.Error("accepted an unknown flag")
		}
	})
}

func FuzzConfig(f *testing.F) {
	f.Add("127.0.0.1:8080", "3s", "1", "create=0.1")
	f.Add("[::1]:0", "0s", "", "")
	f.Fuzz(func(t *testing.T, addr, latency, dev, failures string) {
		c, err := parseConfig("serve", nil, env(map[string]string{
			"DEVPORT_ADDR": addr, "DEVPORT_SIM_LATENCY": latency, "DEVPORT_DEV_LOGIN": dev, "DEVPORT_SIM_FAILURES": failures,
		}), io.Discard, nil)
		if err == nil && (c.Addr == "" || c.SimLatency < 0) {
			t.Errorf("accepted %+v", c)
		}
	})
}
