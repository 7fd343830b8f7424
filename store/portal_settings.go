package store

import (
	"context"
	"fmt"
)

const (
	insertPortalSettingSQL = `INSERT INTO portal_settings (name, value, updated_at) VALUES (:name, :value, :now)
		ON CONFLICT (name) DO NOTHING`
	getPortalSettingSQL = `SELECT value FROM portal_settings WHERE name = :name`
)

// AgreeOnSetting records value under name unless a value is recorded
// already, and returns the recorded one: the first replica of a portal
// records what every replica must share, later ones compare with it.
func (s *Store) AgreeOnSetting(ctx context.Context, name, value string) (recorded string, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		n, err := execNamed(ctx, tx, insertPortalSettingSQL, arg{"name": name, "value": value, "now": tx.Now()})
		if err != nil {
			return fmt.Errorf("record %s: %w", name, err)
		}
		if n == 1 {
			if err := tx.Audit(ctx, System, "portal_setting.record", "portal_setting", name, map[string]any{"value": value}); err != nil {
				return err
			}
		}
		return getNamed(ctx, tx, &recorded, getPortalSettingSQL, arg{"name": name})
	})
	return recorded, err
}
